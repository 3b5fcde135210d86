"""The rule functions of plateseg.pipeline (model-free ones run here) and the thin scripts that call them."""
import ast
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from plateseg.io.ngff import block_record, read_labels, write_well_image, write_well_labels
from plateseg.pipeline.classical import classical_well
from plateseg.pipeline.infer import infer_well
from plateseg.pipeline.measure import measure_objects, measure_well_tables, well_summary
from plateseg.pipeline.pick import pick_well
from plateseg.pipeline.watershed import watershed_well

SCRIPTS = Path(__file__).resolve().parents[2] / "workflow" / "scripts"


@pytest.mark.parametrize("script", sorted(SCRIPTS.glob("*.py")), ids=lambda p: p.name)
def test_scripts_are_thin(script):
    text = script.read_text()
    assert len(text.splitlines()) <= 15
    assert "snakemake.config" not in text  # tunables come from params only
    assert "setup_logging(snakemake.log[0])" in text
    tree = ast.parse(text)
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.For, ast.While, ast.Lambda))]


def test_one_inference_script_for_both_engines():
    rules = (SCRIPTS.parent / "rules" / "segment.smk").read_text()
    assert rules.count('"../scripts/infer.py"') == 2
    assert 'engine="unet"' in rules and 'engine="maskrcnn"' in rules
    with pytest.raises(ValueError, match="unknown engine"):
        infer_well("cellpose", "image.zarr", "model.pt", "out.zarr")
    with pytest.raises(ValueError, match="needs table_out"):
        infer_well("maskrcnn", "image.zarr", "model.pt", "out.zarr")


def _well(tmp_path):
    img = np.zeros((1, 32, 32), np.uint16)
    img[0, 4:12, 4:12] = 1000
    img[0, 18:28, 18:28] = 1000
    write_well_image(tmp_path / "image.zarr", {1: img, 2: img}, ["DNA"], 16, 1.0)
    return tmp_path / "image.zarr"


def test_classical_measure_and_summary_of_a_well(tmp_path):
    image = _well(tmp_path)
    classical_well(image, tmp_path / "classical.zarr", 0, {}, tile_size=16)
    assert int(read_labels(tmp_path / "classical.zarr", 2).max()) == 2
    objects = measure_objects(image, tmp_path / "classical.zarr", tmp_path / "objects.parquet", {"Metadata_Well": "A01"})
    assert len(objects) == 4 and not [c for c in objects.columns if "Ensemble" in c]
    assert pd.read_parquet(tmp_path / "objects.parquet").equals(objects)
    profile, row = well_summary(tmp_path / "objects.parquet", image, tmp_path / "A01.csv", tmp_path / "A01_summary.csv",
                                {"Metadata_Well": "A01"}, tmp_path / "classical.zarr")
    assert row["Count_Nuclei"].iloc[0] == 4 and not [c for c in row.columns if "Ensemble" in c]
    # seam QC of fields smaller than a block: one block each, nothing across a seam or larger than the halo
    for table in (row, profile):
        assert table[["Metadata_QC_Blocks", "Metadata_QC_NucleiAcrossSeams",
                      "Metadata_QC_NucleiLargerThanHalo"]].values.tolist() == [[2, 0, 0]]
    assert profile["Metadata_Object_Count"].iloc[0] == 4 and profile["Nuclei_AreaShape_Area"].iloc[0] == objects["Nuclei_AreaShape_Area"].median()
    assert pd.read_csv(tmp_path / "A01.csv").equals(profile) and pd.read_csv(tmp_path / "A01_summary.csv").equals(row)


def test_measure_writes_the_tables_and_picture_of_a_well(tmp_path):
    """Rule measure in one job: the objects, the profile and summary rows, the report's picture."""
    image = _well(tmp_path)
    classical_well(image, tmp_path / "classical.zarr", 0, {}, tile_size=16)
    out = [tmp_path / n for n in ("objects.parquet", "A01.csv", "A01_summary.csv", "A01.png")]
    measure_well_tables(image, tmp_path / "classical.zarr", *out, {"Metadata_Well": "A01"}, "P A01")
    assert len(pd.read_parquet(out[0])) == 4 and pd.read_csv(out[2])["Count_Nuclei"].iloc[0] == 4
    assert pd.read_csv(out[1])["Metadata_Object_Count"].iloc[0] == 4
    assert out[3].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_watershed_of_a_well_from_maps_and_points(tmp_path):
    maps = np.zeros((3, 32, 32), np.float32)
    maps[0, 4:12, 4:20] = 1.0
    maps[2, 8, 8] = maps[2, 8, 16] = 1.0
    write_well_image(tmp_path / "unet.zarr", {1: maps}, ["fg", "boundary", "centre"], 16, 1.0)
    settings = {"mode": "centre", "min_area": 1, "peak_min_distance": 1}
    watershed_well(tmp_path / "unet.zarr", tmp_path / "centre.zarr", settings, tile_size=16)
    assert int(read_labels(tmp_path / "centre.zarr", 1).max()) == 2
    pd.DataFrame({"field": [1], "centroid_y": [8.0], "centroid_x": [8.0]}).to_parquet(tmp_path / "points.parquet")
    watershed_well(tmp_path / "unet.zarr", tmp_path / "points.zarr", dict(settings, mode="points"),
                   points=tmp_path / "points.parquet", tile_size=16)
    assert int(read_labels(tmp_path / "points.zarr", 1).max()) == 1


def test_pick_well_keeps_one_candidate_per_nucleus(tmp_path):
    from plateseg.ensemble.picker import train_picker

    a = np.zeros((32, 32), np.uint32)
    a[4:12, 4:12] = 1
    b = np.zeros((32, 32), np.uint32)
    b[4:12, 5:12] = 3
    b[20:26, 20:26] = 4
    maps = np.zeros((3, 32, 32), np.float32)
    write_well_image(tmp_path / "unet.zarr", {1: maps}, ["fg", "boundary", "centre"], 16, 1.0)
    write_well_labels(tmp_path / "unet_labels.zarr", {1: a}, tile_size=16)
    write_well_labels(tmp_path / "maskrcnn.zarr", {1: b}, tile_size=16)
    pd.DataFrame({"field": [1, 1], "label": [3, 4], "score": [0.9, 0.8]}).to_parquet(tmp_path / "maskrcnn.parquet")
    table = pd.DataFrame({"area": np.linspace(1, 100, 60), "iou": 0.9})
    train_picker(table, params={"n_boosters": 1, "num_boost_round": 2}).save(tmp_path / "picker.json")
    picks = pick_well(tmp_path / "unet.zarr", tmp_path / "unet_labels.zarr", tmp_path / "maskrcnn.zarr",
                      tmp_path / "maskrcnn.parquet", tmp_path / "picker.json", tmp_path / "ensemble.zarr",
                      tmp_path / "picks.parquet", tile_size=16)
    assert len(picks) == 2 and picks["field"].tolist() == [1, 1]
    assert int(read_labels(tmp_path / "ensemble.zarr", 1).max()) == 2
    assert block_record(tmp_path / "ensemble.zarr") == {1: {"objects": 2, "blocks": 1, "on_seams": 0, "cut_by_halo": 0}}
    assert pd.read_parquet(tmp_path / "picks.parquet").equals(picks)
