"""The shipped model set models/dsb2018-fluo: every file loads, its metadata says what the model card says, and
the models segment a real 256x256 DSB2018 field they never saw (a field of the demo plate, with its truth)."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import tifffile
import yaml

from support import REPO

SET = REPO / "models" / "dsb2018-fluo"
CARD = (SET / "README.md").read_text()
FIELD = REPO / "demo" / "dsb2018-fluo" / "images" / "DSB_B02_s1_w1.tif"
TRUTH = REPO / "demo" / "dsb2018-fluo" / "groundtruth" / "DSB_B02_s1_labels.tif"
SETTINGS = yaml.safe_load((SET / "settings.yaml").read_text())


def card_hash():
    return re.search(r"data hash `([0-9a-f]{16})`", CARD).group(1)


@pytest.fixture(scope="module")
def engines():
    from plateseg.engines import maskrcnn, unet

    return {"unet": unet.load_checkpoint(SET / "unet.pt", "cpu"), "maskrcnn": maskrcnn.load_checkpoint(SET / "maskrcnn.pt", "cpu")}


def test_the_set_is_small_and_float16():
    import torch

    files = [p for p in SET.iterdir() if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 100e6
    for name in ("unet.pt", "maskrcnn.pt"):
        state = torch.load(SET / name, map_location="cpu", weights_only=True)["state_dict"]
        floats = [v for v in state.values() if v.is_floating_point()]
        assert floats and all(v.dtype == torch.float16 for v in floats), name


@pytest.mark.parametrize("engine, arch", [("unet", "smp.Unet"), ("maskrcnn", "torchvision.MaskRCNN")])
def test_metadata_matches_the_card(engines, engine, arch):
    _, meta = engines[engine]
    assert meta["arch"]["name"] == arch and meta["arch"]["in_channels"] == 1
    assert meta["channels"] == [0]
    assert meta["normalization"] == {"method": "percentile", "p_low": 1.0, "p_high": 99.8, "per": "image and channel"}
    assert meta["pixel_size"] is None  # DSB2018 has none; the training scale is the nucleus diameter
    assert meta["nucleus_diameter"] > 5 and f"{meta['nucleus_diameter']:.1f} px" in CARD
    assert meta["data_hash"] == card_hash()
    assert meta["model_set"] == "dsb2018-fluo" and meta["weights_dtype"] == "float16"
    # nothing of the kept-out fold was trained on, and the demo plate's fields are kept out
    kept = set(meta["kept_out_ids"])
    assert not kept & set(meta["train_ids"]) and not kept & set(meta["val_ids"])
    demo = set(line.split(",")[2] for line in (REPO / "demo" / "dsb2018-fluo" / "fields.csv").read_text().splitlines()[1:])
    assert demo <= kept


def test_a_real_field_gives_the_true_nuclei(engines):
    from plateseg.ensemble.features import field_candidates
    from plateseg.ensemble.pick import pick
    from plateseg.ensemble.picker import Picker
    from plateseg.evaluation.metrics import evaluate_dataset
    from plateseg.pipeline.candidates import engine_predictions

    image = tifffile.imread(FIELD)[None].astype(np.float32)
    truth = tifffile.imread(TRUTH)
    assert image.shape == (1, 256, 256)
    ws = {"mode": SETTINGS["watershed"]["markers"], **{k: v for k, v in SETTINGS["watershed"].items() if k != "markers"}}
    maps, labels, scores = engine_predictions(image, engines["unet"], engines["maskrcnn"], 256, 64, 2, ws,
                                              SETTINGS["maskrcnn"], "cpu")
    table = field_candidates(labels, maps, scores)
    table["predicted_iou"] = Picker.load(SET / "picker.json").predict(table)
    final, _ = pick(labels, table, **SETTINGS["ensemble"])
    n_true = len(np.unique(truth)) - 1
    for name, lab in {**labels, "ensemble": final}.items():
        _, summary = evaluate_dataset([truth], [lab], tie="gt")
        assert summary["pooled_f1_50"] > 0.7, (name, summary["pooled_f1_50"])
        assert abs(len(np.unique(lab)) - 1 - n_true) <= 0.3 * n_true, name


def test_the_picker_trained_on_images_neither_engine_saw(engines):
    from plateseg.ensemble.picker import Picker

    picker = Picker.load(SET / "picker.json")
    _, meta = engines["unet"]
    assert picker.meta["model_set"] == "dsb2018-fluo" and picker.meta["data_hash"] == card_hash()
    assert set(picker.meta["train_ids"]) == set(meta["val_ids"])
    for _, m in engines.values():
        assert not set(picker.meta["train_ids"]) & (set(m["train_ids"]) | set(m["kept_out_ids"]))
    assert picker.meta["settings"] == SETTINGS["ensemble"]
