"""Rule choose_model (plateseg.pipeline.validation.choose_finetuned): with models.source finetune, the fine-tuned
model is used only where its fold models beat the model fine-tuning started from on the annotated images they did
not train on; otherwise the starting model is kept, and the picker's candidates come from it."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import tifffile

from support import REPO

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

SET = REPO / "models" / "dsb2018-fluo"
DEMO = REPO / "demo" / "dsb2018-fluo"
FIELDS = ["DSB_A01_s1", "DSB_A02_s1", "DSB_B01_s1", "DSB_B02_s1"]


@pytest.fixture(scope="module")
def annotated(tmp_path_factory):
    """Four real DSB2018 fields as an annotated folder, two folds, and two fold "fine-tuned" U-Nets each:
    the set's weights (as good as the start) and random weights (far worse), with the fold metadata."""
    from plateseg.engines import unet

    d = tmp_path_factory.mktemp("choose")
    for sub in ("images", "masks"):
        (d / "annotations" / sub).mkdir(parents=True)
    for f in FIELDS:
        shutil.copy(DEMO / "images" / f"{f}_w1.tif", d / "annotations" / "images" / f"{f}.tif")
        shutil.copy(DEMO / "groundtruth" / f"{f}_labels.tif", d / "annotations" / "masks" / f"{f}.tif")
    pd.DataFrame({"id": FIELDS, "fold": [0, 0, 1, 1]}).to_csv(d / "folds.csv", index=False)
    model, meta = unet.load_checkpoint(SET / "unet.pt", "cpu")
    p = unet.UNetParams.coerce({k: v for k, v in meta["params"].items() if k in unet.UNetParams.__dataclass_fields__})
    torch.manual_seed(0)
    random = unet._model_from_arch(meta["arch"])
    models = {}
    for kind, weights in (("start", model), ("random", random)):
        for k in (0, 1):
            held_out = [f for f, fold in zip(FIELDS, [0, 0, 1, 1]) if fold == k]
            fold_meta = unet.checkpoint_meta(p, fold=str(k), train_ids=[f for f in FIELDS if f not in held_out],
                                             val_ids=held_out, nucleus_diameter=meta["nucleus_diameter"],
                                             nucleus_diameter_range=meta["nucleus_diameter_range"])
            models[kind, k] = d / f"{kind}_{k}.pt"
            unet.save_checkpoint(models[kind, k], weights, fold_meta)
    unet.save_checkpoint(d / "random_all.pt", random, unet.checkpoint_meta(p, fold="all"))
    return d, models


def test_a_finetuning_that_made_the_model_worse_is_rejected_for_the_start(annotated, tmp_path):
    from plateseg.pipeline.validation import choose_finetuned, kept_initial

    d, models = annotated
    table = choose_finetuned("unet", [models["random", 0], models["random", 1]], d / "random_all.pt", SET / "unet.pt",
                             d / "annotations", tmp_path / "final.pt", tmp_path / "check.csv")
    assert list(table["fold"]) == ["0", "1", "mean"] and list(table["n_images"]) == [2, 2, 4]
    mean = table.iloc[-1]
    assert mean["dsb_map_initial"] > 0.4 and mean["dsb_map_finetuned"] < 0.1, table
    assert np.isclose(mean["dsb_map_initial"], table["dsb_map_initial"][:2].mean())
    assert (table["choice"] == "initial").all()
    # the model inference gets is the set's file, byte for byte; the oof candidates know it
    assert (tmp_path / "final.pt").read_bytes() == (SET / "unet.pt").read_bytes()
    assert kept_initial(tmp_path / "check.csv") == str(SET / "unet.pt")


def test_a_finetuning_that_beats_the_start_is_used(annotated, tmp_path):
    from plateseg.pipeline.validation import choose_finetuned, kept_initial

    d, models = annotated
    # here the "start" is the random model and the fold models carry the set's weights
    table = choose_finetuned("unet", [models["start", 0], models["start", 1]], SET / "unet.pt", d / "random_all.pt",
                             d / "annotations", tmp_path / "final.pt", tmp_path / "check.csv")
    mean = table.iloc[-1]
    assert mean["dsb_map_finetuned"] > mean["dsb_map_initial"] + 0.3 and (table["choice"] == "finetuned").all()
    assert (tmp_path / "final.pt").read_bytes() == (SET / "unet.pt").read_bytes()
    assert kept_initial(tmp_path / "check.csv") is None
    assert not list(tmp_path.glob(".*partial*"))


def test_a_tie_keeps_the_start(annotated, tmp_path):
    """Fine-tuning that changes nothing measurable is not taken (the start is the known model)."""
    from plateseg.pipeline.validation import choose_finetuned

    d, models = annotated
    table = choose_finetuned("unet", [models["start", 0], models["start", 1]], d / "random_all.pt", SET / "unet.pt",
                             d / "annotations", tmp_path / "final.pt", tmp_path / "check.csv")
    mean = table.iloc[-1]
    assert mean["dsb_map_finetuned"] == mean["dsb_map_initial"] and mean["choice"] == "initial"
    assert (tmp_path / "final.pt").read_bytes() == (SET / "unet.pt").read_bytes()
