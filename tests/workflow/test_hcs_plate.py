"""The run's OME-Zarr HCS plate (issue 15): validated against the NGFF 0.5 schemas, read by ome-zarr-py as a plate
and opened by napari's reader (napari-ome-zarr through npe2, headless: no viewer, no window)."""
from __future__ import annotations

import numpy as np
import pytest
import zarr

pytestmark = pytest.mark.workflow


def test_plate_zarr_is_a_valid_hcs_plate_with_every_label_set(trained_plate):
    from ome_zarr_models.v05.hcs import HCS
    from ome_zarr_models.v05.image import Image
    from ome_zarr_models.v05.image_label import ImageLabel

    from plateseg.io.ngff import open_field, read_labels

    res = trained_plate / "work" / "results" / "DEMO"
    root = zarr.open_group(str(res / "plate.zarr"), mode="r")
    plate = HCS.from_zarr(root).attributes.ome.plate  # validates the plate, its rows, wells and fields
    assert [w.path for w in plate.wells] == ["A/1", "A/2"] and plate.field_count == 1
    for well, path in (("A01", "A/1"), ("A02", "A/2")):
        field = root[f"{path}/1"]
        Image.from_zarr(field)
        np.testing.assert_array_equal(field["0"][...], open_field(res / well / "image.zarr", 1)[...])
        assert field["1"].shape == (2, 128, 128)  # the pyramid halves to one 128-px tile (tiling.tile_size 128)
        # the final labels are "nuclei"; the engines' and the evaluated classical labels sit beside them
        assert field["labels"].attrs["ome"]["labels"] == ["nuclei", "unet", "maskrcnn", "classical"]
        for name, store in (("nuclei", "ensemble"), ("unet", "unet_labels"), ("maskrcnn", "maskrcnn"), ("classical", "classical")):
            ImageLabel.from_zarr(field[f"labels/{name}"])
            np.testing.assert_array_equal(field[f"labels/{name}/0"][...], read_labels(res / well / f"{store}.zarr", 1))
        assert set(np.unique(field["labels/nuclei/1"][...])) <= set(np.unique(field["labels/nuclei/0"][...]))


def test_ome_zarr_py_and_napari_read_the_plate(trained_plate):
    import npe2
    from npe2 import io_utils
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Plate, Reader

    plate_zarr = trained_plate / "work" / "results" / "DEMO" / "plate.zarr"
    nodes = list(Reader(parse_url(str(plate_zarr)))())
    assert isinstance(nodes[0].specs[0], Plate)
    assert nodes[0].data[0].shape == (2, 256, 512)  # one row of two 256 x 256 wells, two channels

    npe2.PluginManager.instance().discover()  # the installed readers (napari-ome-zarr)
    layers = io_utils.read([str(plate_zarr / "A" / "1" / "1")], plugin_name="napari-ome-zarr", stack=False)
    kinds = [kind for _, _, kind in layers]
    assert kinds == ["image", "labels", "labels", "labels", "labels"], kinds
    image, meta, _ = layers[0]
    assert [d.shape for d in image] == [(2, 256, 256), (2, 128, 128)] and meta["name"][0].endswith("DNA")
    nuclei = np.asarray(layers[1][0][0])
    assert nuclei.shape == (256, 256) and nuclei.max() > 5
