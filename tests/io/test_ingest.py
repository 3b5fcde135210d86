import numpy as np
import pandas as pd
import pytest
import tifffile
import zarr

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


def test_decode_errors_name_the_file_and_the_odd_dtype(tmp_path):
    a = np.zeros((40, 50), np.uint16)
    good = [_write(tmp_path / f"good{i}.tif", a) for i in range(3)]
    (tmp_path / "empty.tif").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty.tif: cannot read as TIFF"):
        ingest_well([{"field": 1, "channel": "1", "path": good[0]}, {"field": 1, "channel": "2", "path": str(tmp_path / "empty.tif")}],
                    {"1": "DNA", "2": "Marker"}, tmp_path / "x.zarr", 32, 1.0)
    odd = _write(tmp_path / "odd.tif", a.astype(np.int32))
    files = [{"field": f, "channel": c, "path": p} for (f, c), p in zip([(1, "1"), (1, "2"), (2, "1"), (2, "2")],
                                                                       [good[0], good[1], odd, good[2]])]
    # the odd file is the one named, although a good file was read after it
    with pytest.raises(ValueError, match=r"^\S*odd.tif: dtype int32 differs from the other 3 file\(s\) of the well \(uint16"):
        ingest_well(files, {"1": "DNA", "2": "Marker"}, tmp_path / "x.zarr", 32, 1.0)
    assert not (tmp_path / "x.zarr").exists()


def test_non_finite_pixels_are_an_error_naming_the_file(tmp_path):
    img = np.ones((40, 50), np.float32)
    img[3:5, 3:5] = np.inf
    img[10, 10] = np.nan
    path = _write(tmp_path / "float.tif", img)
    with pytest.raises(ValueError, match=r"float.tif: 5 pixel\(s\) are NaN or infinite"):
        ingest_well([{"field": 1, "channel": "1", "path": path}], {"1": "DNA"}, tmp_path / "x.zarr", 32, 1.0)
    assert not (tmp_path / "x.zarr").exists()
    np.testing.assert_array_equal(read_plane(_write(tmp_path / "finite.tif", np.ones((4, 4), np.float32))), 1.0)


def test_blank_and_saturated_planes_are_kept_and_flagged(tmp_path, caplog):
    import zarr

    from plateseg.measure.summarize import summarize_well

    rng = np.random.default_rng(0)
    normal = rng.integers(100, 1000, (40, 50), dtype=np.uint16)
    saturated = normal.copy()
    saturated[:10] = 65535  # 25% of the pixels at the top of uint16
    files = [{"field": 1, "channel": "1", "path": _write(tmp_path / "f1.tif", normal)},
             {"field": 2, "channel": "1", "path": _write(tmp_path / "f2_blank.tif", np.zeros((40, 50), np.uint16))},
             {"field": 3, "channel": "1", "path": _write(tmp_path / "f3_sat.tif", saturated)}]
    with caplog.at_level("WARNING"):
        ingest_well(files, {"1": "DNA"}, tmp_path / "image.zarr", 32, 1.0)
    assert "f2_blank.tif" in caplog.text and "empty" in caplog.text and "f3_sat.tif" in caplog.text
    qc = dict(zarr.open_group(str(tmp_path / "image.zarr"), mode="r").attrs)["plateseg_qc"]
    assert qc == {"empty": [[2, "DNA"]], "saturated": [[3, "DNA"]]}
    np.testing.assert_array_equal(open_field(tmp_path / "image.zarr", 2)[0], 0)  # kept, not dropped
    row = summarize_well(pd.DataFrame({"Metadata_Site": []}), {"Metadata_Well": "A01"}, 3, qc=qc)
    assert int(row["Metadata_QC_EmptyFields"].iloc[0]) == 1 and int(row["Metadata_QC_SaturatedFields"].iloc[0]) == 1


def test_two_files_of_different_dtypes_are_both_named(tmp_path):
    a = _write(tmp_path / "a.tif", np.zeros((8, 8), np.uint16))
    b = _write(tmp_path / "b.tif", np.zeros((8, 8), np.int32))
    with pytest.raises(ValueError, match=r"different dtypes \(uint16: .*a.tif; int32: .*b.tif\)"):
        ingest_well([{"field": 1, "channel": "1", "path": a}, {"field": 1, "channel": "2", "path": b}],
                    {"1": "DNA", "2": "Marker"}, tmp_path / "x.zarr", 32, 1.0)


def test_z_stacks_are_projected_or_refused(tmp_path):
    rng = np.random.default_rng(3)
    planes = [rng.integers(0, 60000, (30, 40), dtype=np.uint16) for _ in range(3)]
    files = [{"field": 1, "channel": "1", "plane": z + 1, "path": _write(tmp_path / f"z{z + 1}.tif", p)}
             for z, p in enumerate(planes)][::-1]  # any file order
    for method, expected in (("max", np.max(planes, axis=0)),
                             ("mean", np.round(np.mean(np.asarray(planes, np.float64), axis=0)).astype(np.uint16))):
        out = tmp_path / f"{method}.zarr"
        ingest_well(files, {"1": "DNA"}, out, tile_size=16, pixel_size=1.0, z_projection=method)
        np.testing.assert_array_equal(open_field(out, 1)[0], expected)
        attrs = zarr.open_group(str(out), mode="r").attrs["plateseg_z_projection"]
        assert attrs == {"method": method, "planes": {"1/1": 3}}
    # without a projection nothing is dropped: an error naming every file and the config key
    with pytest.raises(ValueError, match="input.z_projection") as err:
        ingest_well(files, {"1": "DNA"}, tmp_path / "none.zarr", tile_size=16, pixel_size=1.0)
    assert all(str(f["path"]) in str(err.value) for f in files)
    assert not (tmp_path / "none.zarr").exists()


def test_tiled_and_stripped_planes_are_streamed_whole_and_stacks_refused(tmp_path):
    """Whole-slide TIFFs (tiled and compressed, or in strips) are read strip by strip: the store holds every pixel."""
    rng = np.random.default_rng(5)
    a, b = (rng.integers(0, 60000, (700, 900), dtype=np.uint16) for _ in range(2))
    tifffile.imwrite(tmp_path / "tiled.tif", a, tile=(256, 256), compression="zlib")
    tifffile.imwrite(tmp_path / "strips.tif", b, rowsperstrip=37)
    files = [{"field": 1, "channel": "1", "path": str(tmp_path / "tiled.tif")},
             {"field": 1, "channel": "2", "path": str(tmp_path / "strips.tif")}]
    assert ingest_well(files, {"1": "DNA", "2": "Marker"}, tmp_path / "image.zarr", 128, 1.0) == {1: (700, 900)}
    np.testing.assert_array_equal(open_field(tmp_path / "image.zarr", 1)[...], np.stack([a, b]))
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((3, 40, 50), np.uint16), photometric="minisblack")
    with pytest.raises(ValueError, match=r"stack.tif: expected a single 2-D plane"):
        ingest_well([{"field": 1, "channel": "1", "path": str(tmp_path / "stack.tif")}], {"1": "DNA"},
                    tmp_path / "x.zarr", 32, 1.0)
    assert not (tmp_path / "x.zarr").exists()
