import numpy as np
import pandas as pd
import pytest

from plateseg.measure.objects import measure_field, measure_well
from plateseg.io.ngff import write_well_image, write_well_labels
from plateseg.measure.qc import plate_grid, plate_heatmaps
from plateseg.measure.summarize import feature_columns, plate_summary, summarize_well


def test_measure_field_hand_made_objects():
    lab = np.zeros((20, 30), np.uint32)
    lab[2:6, 3:8] = 1  # 4x5 rectangle
    lab[10:19, 20:29] = 2  # 9x9 square
    img = np.stack([np.full((20, 30), 10.0), np.zeros((20, 30))])
    img[1][lab == 2] = 5
    df = measure_field(lab, img, ["DNA", "Marker"])
    assert df["Metadata_ObjectNumber"].tolist() == [1, 2]
    assert df["Nuclei_AreaShape_Area"].tolist() == [20, 81]
    assert df["Nuclei_Location_Center_X"].tolist() == [5.0, 24.0] and df["Nuclei_Location_Center_Y"].tolist() == [3.5, 14.0]
    assert df["Nuclei_Intensity_IntegratedIntensity_DNA"].tolist() == [200.0, 810.0]
    assert df["Nuclei_Intensity_MeanIntensity_Marker"].tolist() == [0.0, 5.0]
    assert df["Nuclei_AreaShape_Solidity"].tolist() == [1.0, 1.0]
    assert df.loc[1, "Nuclei_AreaShape_Eccentricity"] == pytest.approx(0.0, abs=1e-9)


def test_measure_field_empty_has_columns_and_numeric_dtypes():
    df = measure_field(np.zeros((5, 5), np.uint32), np.zeros((1, 5, 5)), ["DNA"])
    assert len(df) == 0 and "Nuclei_Intensity_MeanIntensity_DNA" in df.columns
    assert all(pd.api.types.is_numeric_dtype(df[c]) for c in df.columns)


def test_measure_well_adds_metadata_per_field(tmp_path):
    img = np.ones((1, 16, 16), np.uint16)
    lab1 = np.zeros((16, 16), np.uint32)
    lab1[2:5, 2:5] = 1
    write_well_image(tmp_path / "image.zarr", {1: img, 2: img}, ["DNA"], 8, 1.0)
    write_well_labels(tmp_path / "labels.zarr", {1: lab1, 2: np.zeros((16, 16), np.uint32)}, tile_size=8)
    df = measure_well(tmp_path / "image.zarr", tmp_path / "labels.zarr", {"Metadata_Plate": "P1", "Metadata_Well": "B03"})
    assert df[["Metadata_Plate", "Metadata_Well", "Metadata_Site", "Metadata_ObjectNumber"]].values.tolist() == [["P1", "B03", 1, 1]]
    # without the ensemble's picks there is no ensemble column (issue 11: they were filled for every method)
    assert not [c for c in df.columns if c.startswith("Metadata_Ensemble_")]
    row = summarize_well(df, {"Metadata_Well": "B03"}, n_fields=2)
    assert not [c for c in row.columns if "Ensemble" in c]


def test_measure_well_takes_engine_and_predicted_iou_from_the_picks(tmp_path):
    img = np.ones((1, 16, 16), np.uint16)
    lab = np.zeros((16, 16), np.uint32)
    lab[2:5, 2:5] = 1
    lab[8:12, 8:12] = 2
    write_well_image(tmp_path / "image.zarr", {1: img, 3: img}, ["DNA"], 8, 1.0)
    write_well_labels(tmp_path / "labels.zarr", {1: lab, 3: (lab == 2).astype(np.uint32)}, tile_size=8)
    picks = pd.DataFrame({"field": [3, 1, 1], "label": [1, 2, 1], "engine": ["maskrcnn", "unet", "maskrcnn"],
                          "predicted_iou": [0.5, 0.9, 0.7]})
    df = measure_well(tmp_path / "image.zarr", tmp_path / "labels.zarr", {"Metadata_Well": "A01"}, picks)
    assert df[["Metadata_Site", "Metadata_ObjectNumber", "Metadata_Ensemble_Source", "Metadata_Ensemble_PredictedIoU"]].values.tolist() == [
        [1, 1, "maskrcnn", 0.7], [1, 2, "unet", 0.9], [3, 1, "maskrcnn", 0.5]]
    row = summarize_well(df, {"Metadata_Well": "A01"}, n_fields=2)
    assert row["Metadata_Ensemble_FractionUNet"].iloc[0] == pytest.approx(1 / 3)
    assert row["Metadata_Ensemble_MeanPredictedIoU"].iloc[0] == pytest.approx(0.7)
    with pytest.raises(ValueError, match="without a row in the picks"):
        measure_well(tmp_path / "image.zarr", tmp_path / "labels.zarr", {}, picks.iloc[:2])


def test_summarize_well_and_plate():
    objects = pd.DataFrame({
        "Metadata_Site": [1, 1, 2], "Metadata_ObjectNumber": [1, 2, 1], "Nuclei_Location_Center_X": [1.0, 2.0, 3.0],
        "Nuclei_AreaShape_Area": [10.0, 20.0, 60.0], "Nuclei_Intensity_MeanIntensity_DNA": [1.0, 2.0, 3.0],
    })
    assert feature_columns(objects) == ["Nuclei_AreaShape_Area", "Nuclei_Intensity_MeanIntensity_DNA"]
    meta = {"Metadata_Plate": "P", "Metadata_Well": "B02", "Metadata_Row": "B", "Metadata_Column": 2}
    row = summarize_well(objects, meta, n_fields=3).iloc[0]
    assert row["Count_Nuclei"] == 3 and row["Count_Nuclei_PerField"] == 1.0
    assert row["Mean_Nuclei_AreaShape_Area"] == 30.0 and row["Median_Nuclei_AreaShape_Area"] == 20.0
    assert row["StDev_Nuclei_AreaShape_Area"] == pytest.approx(np.std([10, 20, 60], ddof=1))
    empty = summarize_well(objects.iloc[:0], {**meta, "Metadata_Well": "A10", "Metadata_Row": "A", "Metadata_Column": 10}, n_fields=3)
    assert empty["Count_Nuclei"].iloc[0] == 0
    wells = [summarize_well(objects, {**meta, "Metadata_Well": w, "Metadata_Row": r, "Metadata_Column": c}, 1)
             for w, r, c in (("B10", "B", 10), ("AA01", "AA", 1), ("B02", "B", 2))]
    plate = plate_summary(wells + [empty])
    assert plate["Metadata_Well"].tolist() == ["A10", "B02", "B10", "AA01"]


def test_plate_heatmap_places_wells(tmp_path):
    df = pd.DataFrame({"Metadata_Plate": "P", "Metadata_Row": ["A", "B", "B"], "Metadata_Column": [1, 1, 3],
                       "Count_Nuclei": [5, 7, 9], "Mean_Nuclei_Intensity_MeanIntensity_DNA": [1.0, 2.0, 3.0]})
    grid, rows, cols = plate_grid(df, "Count_Nuclei")
    assert rows == ["A", "B"] and cols == [1, 3]
    assert np.isnan(grid[0, 1]) and grid[1, 1] == 9
    plate_heatmaps(df, ["DNA"], tmp_path / "qc.png")
    assert (tmp_path / "qc.png").read_bytes()[:4] == b"\x89PNG"


def test_plate_heatmap_outlines_and_lists_wells_with_qc_flags(tmp_path, caplog):
    import logging

    from PIL import Image

    base = {"Metadata_Plate": "P", "Metadata_Row": ["A", "A"], "Metadata_Column": [1, 2], "Metadata_Well": ["A01", "A02"],
            "Count_Nuclei": [5, 5], "Metadata_QC_SaturatedFields": [0, 0]}
    clean = pd.DataFrame({**base, "Metadata_QC_EmptyFields": [0, 0]})
    flagged = pd.DataFrame({**base, "Metadata_QC_EmptyFields": [0, 2]})
    plate_heatmaps(clean, [], tmp_path / "clean.png")
    with caplog.at_level(logging.WARNING, logger="plateseg.measure.qc"):
        plate_heatmaps(flagged, [], tmp_path / "flagged.png")
    assert any("well A02: 2 empty fields" in m for m in caplog.messages)

    def red(path):
        px = np.asarray(Image.open(path).convert("RGB")).astype(int)
        return int(((px[..., 0] > 200) & (px[..., 1] < 60) & (px[..., 2] < 60)).sum())

    assert red(tmp_path / "clean.png") == 0 and red(tmp_path / "flagged.png") > 50


def test_seam_qc_columns_sum_the_blocks_the_labelling_recorded(tmp_path):
    """Issue 16: the seam QC columns of a well are the final label store's block record (written by the blockwise
    labelling itself) summed over its fields; a field no larger than a block counts 1 block and 0 / 0."""
    from plateseg.io.ngff import block_record, read_labels
    from plateseg.io.synth import synth_field
    from plateseg.measure.summarize import SEAM_COLUMNS, seam_qc
    from plateseg.pipeline.classical import classical_well
    from plateseg.pipeline.measure import well_summary

    big, _ = synth_field(3, shape=(192, 192), density=3.0, cluster_fraction=0.5)
    small, _ = synth_field(4, shape=(64, 64), density=3.0)
    write_well_image(tmp_path / "image.zarr", {1: big, 2: small}, ["DNA", "Marker"], 32, 1.0)
    settings = {"sigma": 1.0, "threshold": "otsu", "min_distance": 5, "min_area": 20}
    classical_well(tmp_path / "image.zarr", tmp_path / "classical.zarr", 0, settings, tile_size=32, block_size=64,
                   halo=32)
    record = block_record(tmp_path / "classical.zarr")
    assert record[1]["blocks"] == 9 and record[1]["objects"] == int(read_labels(tmp_path / "classical.zarr", 1).max())
    assert record[2] == {"objects": record[2]["objects"], "blocks": 1, "on_seams": 0, "cut_by_halo": 0}
    qc = seam_qc(record)
    assert list(qc) == list(SEAM_COLUMNS) == ["Metadata_QC_Blocks", "Metadata_QC_NucleiAcrossSeams",
                                               "Metadata_QC_NucleiLargerThanHalo"]
    assert qc["Metadata_QC_Blocks"] == 10 and 0 < qc["Metadata_QC_NucleiAcrossSeams"] == record[1]["on_seams"]
    assert qc["Metadata_QC_NucleiLargerThanHalo"] == record[1]["cut_by_halo"]

    objects = tmp_path / "objects.parquet"
    measure_well(tmp_path / "image.zarr", tmp_path / "classical.zarr", {"Metadata_Well": "A01"}).to_parquet(objects)
    profile, summary = well_summary(objects, tmp_path / "image.zarr", tmp_path / "A01.csv", tmp_path / "A01_summary.csv",
                                    {"Metadata_Well": "A01"}, tmp_path / "classical.zarr")
    for path in ("A01.csv", "A01_summary.csv"):  # both per-well CSVs, as written
        row = pd.read_csv(tmp_path / path).iloc[0]
        assert {c: int(row[c]) for c in SEAM_COLUMNS} == qc
    # a label store that records no blocks (Mask R-CNN's): the columns are there, empty
    write_well_labels(tmp_path / "maskrcnn.zarr", {1: np.zeros((192, 192), np.uint32), 2: np.zeros((64, 64), np.uint32)},
                      tile_size=32)
    _, summary = well_summary(objects, tmp_path / "image.zarr", tmp_path / "B.csv", tmp_path / "B_summary.csv",
                              {"Metadata_Well": "A01"}, tmp_path / "maskrcnn.zarr")
    assert summary[list(SEAM_COLUMNS)].isna().all(axis=None)
