"""The benchmarks' shared helpers (plateseg.pipeline.bench) that pick images a model set never saw."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from support import REPO

DEMO = REPO / "demo" / "dsb2018-fluo"
FIELDS = {"DSB_A01_s1": "tissue", "DSB_A02_s1": "tissue", "DSB_B01_s1": "other"}


@pytest.fixture()
def folder(tmp_path):
    """Three real demo fields as an annotated folder whose index has two modalities."""
    for sub in ("images", "masks"):
        (tmp_path / "data" / sub).mkdir(parents=True)
    for f in FIELDS:
        shutil.copy(DEMO / "images" / f"{f}_w1.tif", tmp_path / "data" / "images" / f"{f}.tif")
        shutil.copy(DEMO / "groundtruth" / f"{f}_labels.tif", tmp_path / "data" / "masks" / f"{f}.tif")
    pd.DataFrame({"id": list(FIELDS), "modality": list(FIELDS.values())}).to_csv(tmp_path / "data" / "index.csv",
                                                                                index=False)
    return tmp_path / "data"


def test_unseen_items_are_the_images_of_one_modality_read_as_gray(folder):
    from plateseg.pipeline.bench import unseen_items

    items = unseen_items(folder, "tissue", {"data_hash": "0123456789abcdef"})
    assert [it[0] for it in items] == ["DSB_A01_s1", "DSB_A02_s1"]
    for _, image, mask in items:
        assert image.ndim == 3 and image.shape[0] == 1 and image.shape[1:] == mask.shape
        assert mask.max() > 0 and np.ptp(image) > 0


def test_the_sets_own_training_data_is_refused_and_a_missing_modality_named(folder):
    from plateseg.io.annotated import data_hash
    from plateseg.pipeline.bench import unseen_items

    with pytest.raises(SystemExit, match="is the set's training data"):
        unseen_items(folder, "tissue", {"data_hash": data_hash(folder)})
    with pytest.raises(SystemExit, match=r"no images of modality 'histology'.*\['other', 'tissue'\]"):
        unseen_items(folder, "histology", {"data_hash": "0123456789abcdef"})


def test_annotated_subset_copies_the_files_and_index_rows_of_the_ids(folder, tmp_path):
    from plateseg.io.annotated import load_annotated
    from plateseg.pipeline.bench import annotated_subset

    out = annotated_subset(folder, ["DSB_A02_s1", "DSB_B01_s1"], tmp_path / "subset")
    items, index = load_annotated(out)
    assert [it[0] for it in items] == ["DSB_A02_s1", "DSB_B01_s1"] and list(index["modality"]) == ["tissue", "other"]
    for image_id, _, mask in items:
        assert (out / "masks" / f"{image_id}.tif").read_bytes() == (folder / "masks" / f"{image_id}.tif").read_bytes()
        assert mask.max() > 0
