"""The HCS well's pyramids are written strip by strip from the lazy stores (a whole slide is never in memory) and
equal the whole-array downsampling at every level (plateseg.io.hcs; the plate as viewers read it:
tests/workflow/test_hcs_plate.py)."""
import numpy as np
import zarr

from plateseg.io.hcs import downsample, pyramid_levels, write_hcs_well
from plateseg.io.ngff import write_well_image, write_well_labels


def test_streamed_pyramids_equal_whole_array_downsampling(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 60000, (2, 301, 517), dtype=np.uint16)  # odd sides: the edge rows and columns
    labels = rng.integers(0, 50, (301, 517)).astype(np.uint32)
    write_well_image(tmp_path / "image.zarr", {1: image}, ["DNA", "Marker"], 64, 0.5)
    write_well_labels(tmp_path / "labels.zarr", {1: labels}, tile_size=64)
    write_hcs_well(tmp_path / "image.zarr", {"nuclei": tmp_path / "labels.zarr"}, tmp_path / "A" / "1", "A", 1, 64)
    well = zarr.open_group(str(tmp_path / "A" / "1"), mode="r")
    levels = pyramid_levels(image.shape, 64)
    assert levels == 5 and len(well["1"].attrs["ome"]["multiscales"][0]["datasets"]) == levels
    img, lab = image, labels
    for k in range(levels):
        np.testing.assert_array_equal(well[f"1/{k}"][...], img)
        np.testing.assert_array_equal(well[f"1/labels/nuclei/{k}"][...], lab)
        img, lab = downsample(img), downsample(lab, labels=True)
    window = well["1"].attrs["ome"]["omero"]["channels"][0]["window"]
    assert window["min"] == image[0].min() and window["max"] == image[0].max()
