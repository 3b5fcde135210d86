import numpy as np
import pytest
import zarr

from plateseg.io.files import atomic_path, read_table, write_table
from plateseg.io.ngff import (
    channel_names,
    label_fields,
    list_fields,
    open_field,
    read_labels,
    write_well_image,
    write_well_labels,
)


def test_atomic_path_leaves_nothing_when_the_block_fails(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "out.zarr") as tmp:
            tmp.mkdir()
            (tmp / "chunk").write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_replaces_existing_output(tmp_path):
    (tmp_path / "t.csv").write_text("old")
    with atomic_path(tmp_path / "t.csv") as tmp:
        tmp.write_text("new")
    assert (tmp_path / "t.csv").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]


def test_write_table_roundtrip_and_rejects_unknown_suffix(tmp_path):
    import pandas as pd

    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    for name in ("t.parquet", "t.csv"):
        write_table(df, tmp_path / name)
        assert read_table(tmp_path / name).equals(df)
    with pytest.raises(ValueError, match="parquet or .csv"):
        write_table(df, tmp_path / "t.xlsx")


def test_well_image_store_is_ngff_and_chunked_by_tile(tmp_path):
    rng = np.random.default_rng(0)
    fields = {1: rng.integers(0, 4000, (2, 100, 130), dtype=np.uint16), 3: rng.integers(0, 9, (2, 100, 130), dtype=np.uint16)}
    write_well_image(tmp_path / "image.zarr", fields, ["DNA", "Marker"], tile_size=64, pixel_size=0.5, attrs={"well": "A01"})
    assert list_fields(tmp_path / "image.zarr") == [1, 3]
    assert channel_names(tmp_path / "image.zarr") == ["DNA", "Marker"]
    arr = open_field(tmp_path / "image.zarr", 3)
    assert arr.chunks == (1, 64, 64) and arr.dtype == np.uint16
    np.testing.assert_array_equal(arr[...], fields[3])
    root = zarr.open_group(str(tmp_path / "image.zarr"), mode="r")
    ms = root["1"].attrs["ome"]["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["c", "y", "x"]
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 0.5, 0.5]
    assert root.attrs["ome"]["well"]["images"] == [{"path": "1", "acquisition": 0}, {"path": "3", "acquisition": 0}]
    with pytest.raises(KeyError, match="no field 2"):
        open_field(tmp_path / "image.zarr", 2)


def test_label_store_roundtrip_and_readable_by_ome_zarr(tmp_path):
    lab = np.zeros((50, 70), np.uint32)
    lab[5:10, 5:10] = 1
    lab[20:30, 40:60] = 70000  # beyond uint16
    write_well_labels(tmp_path / "labels.zarr", iter([(2, lab)]), tile_size=32, pixel_size=0.65)
    assert label_fields(tmp_path / "labels.zarr") == [2]
    np.testing.assert_array_equal(read_labels(tmp_path / "labels.zarr", 2), lab)

    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Reader

    nodes = list(Reader(parse_url(str(tmp_path / "labels.zarr" / "2" / "labels" / "nuclei")))())
    assert any(isinstance(s, Label) for s in nodes[0].specs)
    np.testing.assert_array_equal(np.asarray(nodes[0].data[0]), lab)
