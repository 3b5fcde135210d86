"""Rule estimate_scale and zoomed inference, with the shipped models on a real DSB2018 field shown 6x larger (nuclei
~130 px across, beyond what the set was trained on): the diameter is measured, the field zoomed to the model's
scale, and the outputs come back in the field's pixels, better than without rescaling."""
import json
import logging

import numpy as np
import pytest
import tifffile
import torch
import yaml
from scipy import ndimage as ndi

from plateseg.evaluation.matching import dsb_map
from plateseg.io.ngff import read_labels, write_well_image
from plateseg.pipeline.infer import infer_well_instances, infer_well_maps
from plateseg.engines.scale import read_scales
from plateseg.pipeline.scale import estimate_well_scale
from plateseg.pipeline.watershed import watershed_well

from support import REPO

torch.set_num_threads(1)

SET = REPO / "models" / "dsb2018-fluo"
SETTINGS = yaml.safe_load((SET / "settings.yaml").read_text())
WATERSHED = {"mode": "centre", **{k: v for k, v in SETTINGS["watershed"].items() if k != "markers"}}
ZOOM = 6


@pytest.fixture(scope="module")
def large_nuclei(tmp_path_factory):
    """A well store of one real field zoomed 6x, and its truth zoomed the same way."""
    d = tmp_path_factory.mktemp("scale")
    img = tifffile.imread(REPO / "demo" / "dsb2018-fluo" / "images" / "DSB_B02_s1_w1.tif")
    truth = tifffile.imread(REPO / "demo" / "dsb2018-fluo" / "groundtruth" / "DSB_B02_s1_labels.tif")
    big = ndi.zoom(img.astype(np.float32), ZOOM, order=1).astype(img.dtype)
    write_well_image(d / "image.zarr", {1: big[None]}, ["DNA"], 256, 1.0)
    return d, ndi.zoom(truth, ZOOM, order=0)


def test_the_diameter_is_measured_and_the_field_zoomed_to_the_model_scale(large_nuclei, caplog):
    d, truth = large_nuclei
    with caplog.at_level(logging.INFO, logger="plateseg.pipeline.scale"):
        record = estimate_well_scale(d / "image.zarr", d / "scale.json", "auto", checkpoint=SET / "unet.pt")
    true_d = 2 * np.sqrt(np.median(np.bincount(truth.ravel())[1:]) / np.pi)
    field = record["fields"]["1"]
    assert abs(field["diameter"] - true_d) < 0.35 * true_d, (field, true_d)
    assert field["factor"] < 0.7 and field["source"] == "estimated"
    assert json.loads((d / "scale.json").read_text()) == json.loads(json.dumps(record))
    assert read_scales(d / "scale.json") == {1: field["factor"]}
    assert any("zoomed by" in m for m in caplog.messages)


def test_zoomed_inference_gives_labels_in_field_pixels_and_beats_no_rescaling(large_nuclei):
    d, truth = large_nuclei
    scales = read_scales(d / "scale.json") if (d / "scale.json").exists() else {1: 0.5}
    scores = {}
    for name, s in (("none", None), ("auto", scales)):
        infer_well_maps(d / "image.zarr", SET / "unet.pt", d / f"maps_{name}.zarr", tile_size=256, halo=64, scales=s)
        watershed_well(d / f"maps_{name}.zarr", d / f"labels_{name}.zarr", WATERSHED)
        labels = read_labels(d / f"labels_{name}.zarr", 1)
        assert labels.shape == truth.shape
        scores[name] = dsb_map(truth, labels)
    # without rescaling the U-Net cuts these nuclei into fragments
    assert scores["auto"] > scores["none"] + 0.1 and scores["auto"] > 0.15, scores


def test_zoomed_mask_rcnn_labels_and_table_are_in_field_pixels(large_nuclei):
    import pandas as pd

    d, truth = large_nuclei
    infer_well_instances(d / "image.zarr", SET / "maskrcnn.pt", d / "maskrcnn.zarr", d / "maskrcnn.parquet",
                         tile_size=256, halo=64, scales={1: 0.4}, **SETTINGS["maskrcnn"])
    labels = read_labels(d / "maskrcnn.zarr", 1)
    table = pd.read_parquet(d / "maskrcnn.parquet")
    assert labels.shape == truth.shape
    ids = np.unique(labels)[1:]
    assert len(ids) == len(table) > 0.5 * (len(np.unique(truth)) - 1)
    assert set(table["label"]) == set(ids.tolist())
    # the table's centroids and areas are those of the labels (in field pixels)
    cy = ndi.mean(np.mgrid[: labels.shape[0], : labels.shape[1]][0], labels, ids)
    table = table.set_index("label").loc[ids]
    assert np.median(np.abs(table["centroid_y"].to_numpy() - cy)) < 5
    areas = np.bincount(labels.ravel())[ids]
    assert np.median(table["area"].to_numpy() / areas) == pytest.approx(1.0, abs=0.25)


def test_rescale_none_or_a_number_needs_no_model(large_nuclei, tmp_path):
    d, _ = large_nuclei
    assert estimate_well_scale(d / "image.zarr", tmp_path / "a.json", "none")["fields"]["1"]["factor"] == 1.0
    record = estimate_well_scale(d / "image.zarr", tmp_path / "b.json", 0.25)
    assert record["fields"]["1"] == {"diameter": None, "factor": 0.25, "source": "config"}


def test_a_model_that_records_its_pixel_size_is_zoomed_by_the_plate_pixel_size(tmp_path, caplog):
    from plateseg.engines.unet import build_unet, checkpoint_meta, save_checkpoint

    small = dict(encoder_name="resnet18", encoder_depth=3, decoder_channels=(16, 8, 8), crop_size=32, pixel_size=0.5)
    save_checkpoint(tmp_path / "model.pt", build_unet("resnet18", 3, small["decoder_channels"]), checkpoint_meta(small))
    write_well_image(tmp_path / "image.zarr", {1: np.zeros((1, 64, 64), np.uint16)}, ["DNA"], 32, 1.0)
    with caplog.at_level(logging.INFO, logger="plateseg.pipeline.scale"):
        record = estimate_well_scale(tmp_path / "image.zarr", tmp_path / "scale.json", "auto",
                                     checkpoint=tmp_path / "model.pt", pixel_size=1.0)
    # plate pixels twice as large as the model's: the field is shown at twice its size
    assert record["fields"]["1"]["factor"] == 2.0 and record["fields"]["1"]["source"] == "pixel size"
    assert any("zoomed by 2.000 (pixel size)" in m for m in caplog.messages)
