import numpy as np
import pytest
import tifffile

from plateseg.io.ingest import ingest_well, read_plane
from plateseg.io.ngff import list_fields, open_field


def _write(path, arr):
    tifffile.imwrite(path, arr)
    return str(path)


def test_ingest_orders_channels_and_keeps_raw_files(tmp_path):
    rng = np.random.default_rng(1)
    a, b, c = (rng.integers(0, 60000, (40, 50), dtype=np.uint16) for _ in range(3))
    files = [
        {"field": 1, "channel": "2", "path": _write(tmp_path / "f1w2.tif", b)},
        {"field": 1, "channel": "1", "path": _write(tmp_path / "f1w1.tif", a)},
        {"field": 2, "channel": "1", "path": _write(tmp_path / "f2w1.tif", c)},
        {"field": 2, "channel": "2", "path": _write(tmp_path / "f2w2.tif", a)},
    ]
    before = {f["path"]: (tmp_path / f["path"]).read_bytes() for f in files}
    shapes = ingest_well(files, {"1": "DNA", "2": "Marker"}, tmp_path / "image.zarr", tile_size=32, pixel_size=0.65)
    assert shapes == {1: (40, 50), 2: (40, 50)}
    assert list_fields(tmp_path / "image.zarr") == [1, 2]
    np.testing.assert_array_equal(open_field(tmp_path / "image.zarr", 1)[...], np.stack([a, b]))
    np.testing.assert_array_equal(open_field(tmp_path / "image.zarr", 2)[...], np.stack([c, a]))
    assert {f["path"]: (tmp_path / f["path"]).read_bytes() for f in files} == before


def test_ingest_errors_name_the_file(tmp_path):
    a = np.zeros((40, 50), np.uint16)
    ok = _write(tmp_path / "ok.tif", a)
    other = _write(tmp_path / "other_shape.tif", np.zeros((41, 50), np.uint16))
    with pytest.raises(ValueError, match="other_shape.tif"):
        ingest_well([{"field": 1, "channel": "1", "path": ok}, {"field": 1, "channel": "2", "path": other}],
                    {"1": "DNA", "2": "Marker"}, tmp_path / "x.zarr", 32, 1.0)
    with pytest.raises(ValueError, match=r"lacks channel\(s\) \['2'\].*channels.names"):
        ingest_well([{"field": 1, "channel": "1", "path": ok}], {"1": "DNA", "2": "Marker"}, tmp_path / "x.zarr", 32, 1.0)
    assert not (tmp_path / "x.zarr").exists()
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.zeros((3, 40, 50), np.uint16), photometric="minisblack")
    with pytest.raises(ValueError, match="stack.tif.*2-D"):
        read_plane(stack)
    (tmp_path / "broken.tif").write_bytes(b"not a tiff")
    with pytest.raises(ValueError, match="broken.tif: cannot read"):
        read_plane(tmp_path / "broken.tif")
