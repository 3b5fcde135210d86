"""Labelling a well store field by field (plateseg.pipeline.labelling); block by block: tests/tiling/test_blockwise_seams.py."""
import numpy as np
import zarr

from plateseg.io.ngff import label_fields, read_labels, write_well_image
from plateseg.pipeline.labelling import segment_well


def test_segment_well_labels_every_field_and_logs_counts(tmp_path, caplog):
    import logging

    img = np.zeros((2, 20, 20), np.uint16)
    img[0, 2:6, 2:6] = 9
    write_well_image(tmp_path / "image.zarr", {1: img, 2: img * 0}, ["DNA", "Marker"], 8, 1.0)
    with caplog.at_level(logging.INFO, logger="plateseg.pipeline.labelling"):
        stats = segment_well(tmp_path / "image.zarr", tmp_path / "lab.zarr",
                             lambda a, field, blockwise: lambda w, origin: (w[0] > 0).astype(np.uint32),
                             tile_size=8, pixel_size=1.0, attrs={"method": "test"}, describe="threshold")
    assert label_fields(tmp_path / "lab.zarr") == [1, 2]
    assert read_labels(tmp_path / "lab.zarr", 1).sum() == 16 and read_labels(tmp_path / "lab.zarr", 2).max() == 0
    assert "field 1 (1/2): 1 nuclei (threshold)" in caplog.text
    attrs = zarr.open_group(str(tmp_path / "lab.zarr"), mode="r").attrs["plateseg"]
    assert attrs["method"] == "test" and attrs["blocks"]["1"] == stats[1] == {
        "objects": 1, "blocks": 1, "on_seams": 0, "cut_by_halo": 0}
