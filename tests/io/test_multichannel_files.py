"""Files of several channels (issue 16, whole-slide input): an RGB slide's interleaved samples and an OME-TIFF's
channel axis become channels "1".."C" in the manifest (names without a channel only) and are streamed block by block
into the well image, equal to the source channels pixel for pixel; what is still refused names the file."""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import tifffile
import zarr

import plateseg.io.ingest as ingest
from plateseg.io.ingest import ingest_well, open_channels
from plateseg.io.manifest import build_manifest, unlisted_file_channels
from plateseg.io.naming import ManifestError
from plateseg.io.ngff import open_field

REGEX = r"(?P<plate>[A-Z]+)_(?P<well>[A-P]\d\d)_s(?P<field>\d+)\.(?:ome\.)?tif"  # no channel group


def ingest_manifest(manifest, names, out, tile_size=128, **kw):
    """ingest_well on the manifest's rows, as rule ingest gives them (workflow/rules/common.smk)."""
    rows = manifest.to_dict("records")
    return ingest_well(rows, names, out, tile_size=tile_size, pixel_size=0.5, **kw)


@pytest.fixture
def no_whole_reads(monkeypatch):
    """Fail any whole-file read (tifffile.imread) and record the size of every block read from a file."""
    def refuse(*args, **kwargs):
        raise AssertionError("a whole file was read with tifffile.imread")

    blocks = []
    getitem = ingest._Channels.__getitem__

    def record(self, index):
        block = getitem(self, index)
        blocks.append(block.shape)
        return block

    monkeypatch.setattr(tifffile, "imread", refuse)
    monkeypatch.setattr(ingest._Channels, "__getitem__", record)
    return blocks


def test_tiled_bigtiff_rgb_slide_is_three_channels_streamed_block_by_block(tmp_path, no_whole_reads, caplog):
    rng = np.random.default_rng(16)
    rgb = rng.integers(0, 255, (1500, 1300, 3), dtype=np.uint8)
    rgb[..., 1] = 7  # a blank green channel: flagged empty, and only it
    rgb[:400, :, 2] = 255  # blue saturated on > 5% of the slide
    run = tmp_path / "run"
    run.mkdir()
    tifffile.imwrite(run / "HE_A01_s1.tif", rgb, bigtiff=True, tile=(256, 256), photometric="rgb", compression="zlib")
    with tifffile.TiffFile(run / "HE_A01_s1.tif") as tf:
        assert tf.is_bigtiff and tf.pages[0].is_tiled and tf.pages[0].planarconfig == 1  # interleaved samples

    manifest, _ = build_manifest(run, "regex", pattern=REGEX)
    assert manifest["channel"].tolist() == ["1", "2", "3"] and manifest["file_channel"].tolist() == [1, 2, 3]
    assert manifest["path"].nunique() == 1
    names = {"1": "Red", "2": "Green", "3": "Blue"}
    with caplog.at_level(logging.INFO):
        shapes = ingest_manifest(manifest, names, tmp_path / "image.zarr", tile_size=128)
    assert shapes == {1: (1500, 1300)}
    stored = open_field(tmp_path / "image.zarr", 1)
    assert stored.dtype == np.uint8 and stored.shape == (3, 1500, 1300)
    for c in range(3):  # R = channel 1, G = 2, B = 3, pixel for pixel
        np.testing.assert_array_equal(stored[c], rgb[..., c])
    # read in squares of 4 tiles (512 px), all three channels of a square at once, never the whole slide
    assert no_whole_reads and all(b[0] == 3 and b[1] <= 512 and b[2] <= 512 for b in no_whole_reads)
    assert len(no_whole_reads) == 3 * 3  # 1500 x 1300 in 512-px squares: each square read once for 3 channels
    qc = dict(zarr.open_group(str(tmp_path / "image.zarr"), mode="r").attrs)["plateseg_qc"]
    assert qc == {"empty": [[1, "Green"]], "saturated": [[1, "Blue"]]}
    assert "3 channels (tifffile axes YXS)" in caplog.text


@pytest.mark.parametrize("layout", ["ome-tiled", "ome-pyramid", "imagej", "planar-rgb"])
def test_a_file_of_channels_in_a_sample_sheet_row_without_channel_is_split(tmp_path, layout, no_whole_reads):
    rng = np.random.default_rng(3)
    dtype = np.uint8 if layout == "planar-rgb" else np.uint16
    cyx = rng.integers(0, np.iinfo(dtype).max, (3, 300, 420), dtype=dtype)
    path = tmp_path / "slide.ome.tif"
    if layout == "ome-tiled":
        tifffile.imwrite(path, cyx, ome=True, metadata={"axes": "CYX"}, tile=(128, 128), compression="zlib")
    elif layout == "ome-pyramid":
        with tifffile.TiffWriter(path, ome=True) as tw:
            tw.write(cyx, metadata={"axes": "CYX"}, tile=(128, 128), subifds=1)
            tw.write(cyx[:, ::2, ::2], tile=(128, 128), subfiletype=1)
    elif layout == "imagej":
        tifffile.imwrite(path, cyx, imagej=True, metadata={"axes": "CYX"})
    else:
        tifffile.imwrite(path, cyx, photometric="rgb", planarconfig="separate", rowsperstrip=50)
    nuclear = tmp_path / "a02.tif"
    tifffile.imwrite(nuclear, cyx[0])
    sheet = tmp_path / "sheet.csv"
    pd.DataFrame({"path": [path.name, nuclear.name], "plate": "P", "well": ["A01", "A02"], "field": 1,
                  "channel": ["", "1"]}).to_csv(sheet, index=False)
    manifest, _ = build_manifest(None, "samplesheet", sample_sheet=sheet)
    assert manifest[["well", "channel", "file_channel"]].values.tolist() == [
        ["A01", "1", 1], ["A01", "2", 2], ["A01", "3", 3], ["A02", "1", 0]]
    a01 = manifest[manifest["well"] == "A01"]
    ingest_manifest(a01, {"1": "DNA", "2": "Marker", "3": "Cyto"}, tmp_path / "image.zarr", tile_size=64)
    np.testing.assert_array_equal(open_field(tmp_path / "image.zarr", 1)[...], cyx)
    # a subset of the channels, in another order: only those read, each into its place
    ingest_manifest(a01[a01["channel"] != "2"], {"3": "Cyto", "1": "DNA"}, tmp_path / "two.zarr", tile_size=64)
    np.testing.assert_array_equal(open_field(tmp_path / "two.zarr", 1)[...], cyx[[2, 0]])


def test_rgba_alpha_is_channel_4_and_leaving_it_out_is_said(tmp_path, caplog):
    rgba = np.random.default_rng(1).integers(0, 255, (40, 50, 4), dtype=np.uint8)
    run = tmp_path / "run"
    run.mkdir()
    tifffile.imwrite(run / "HE_B02_s1.tif", rgba, photometric="rgb", extrasamples=["unassalpha"])
    manifest, _ = build_manifest(run, "regex", pattern=REGEX)
    assert manifest["channel"].tolist() == ["1", "2", "3", "4"]
    names = {"1": "R", "2": "G", "3": "B"}
    assert "channel(s) 4 of 1 file(s)" in unlisted_file_channels(manifest, names)
    with caplog.at_level(logging.WARNING):
        ingest_manifest(manifest[manifest["channel"].isin(list(names))], names, tmp_path / "image.zarr", tile_size=16)
    assert "HE_B02_s1.tif: its channel(s) [4] are not in config key channels.names" in caplog.text
    np.testing.assert_array_equal(open_field(tmp_path / "image.zarr", 1)[...], np.moveaxis(rgba[..., :3], 2, 0))


def test_files_of_channels_per_z_plane_are_projected_channel_by_channel(tmp_path):
    rng = np.random.default_rng(7)
    planes = [rng.integers(0, 60000, (2, 70, 90), dtype=np.uint16) for _ in range(3)]
    run = tmp_path / "run"
    run.mkdir()
    for z, cyx in enumerate(planes, start=1):
        tifffile.imwrite(run / f"P_A01_s1_z{z}.ome.tif", cyx, ome=True, metadata={"axes": "CYX"})
    pattern = r"(?P<plate>P)_(?P<well>A01)_s(?P<field>\d)_z(?P<plane>\d)\.ome\.tif"
    manifest, _ = build_manifest(run, "regex", pattern=pattern)
    assert len(manifest) == 6 and sorted(manifest["channel"].unique()) == ["1", "2"]
    ingest_manifest(manifest, {"1": "DNA", "2": "Marker"}, tmp_path / "max.zarr", tile_size=16, z_projection="max")
    np.testing.assert_array_equal(open_field(tmp_path / "max.zarr", 1)[...], np.max(planes, axis=0))


def test_header_reads_only_for_names_without_a_channel(tmp_path, monkeypatch):
    calls = []
    layout = ingest.tiff_layout
    monkeypatch.setattr(ingest, "tiff_layout", lambda path: calls.append(path) or layout(path))
    run = tmp_path / "run"
    run.mkdir()
    for w in (1, 2):
        tifffile.imwrite(run / f"P_A0{w}_s1_w{w}.tif", np.zeros((3, 8, 8), np.uint16), photometric="minisblack",
                         metadata={"axes": "CYX"})
    manifest, _ = build_manifest(run, "cellprofiler")
    assert calls == [] and len(manifest) == 2 and "file_channel" not in manifest  # names carry the channel
    manifest, _ = build_manifest(run, "regex", pattern=r"(?P<plate>P)_(?P<well>A0\d)_s(?P<field>1)_w\d")
    assert len(calls) == 2 and len(manifest) == 6


def test_what_is_still_refused_names_the_file_and_what_was_expected(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    # z-planes in one file whose name carries no channel: refused when the manifest is built
    tifffile.imwrite(run / "P_A01_s1.ome.tif", np.zeros((2, 3, 8, 8), np.uint16), ome=True,
                     metadata={"axes": "ZCYX"})
    with pytest.raises(ManifestError, match=r"P_A01_s1.ome.tif: expected a single 2-D plane .* got 2 z-planes"):
        build_manifest(run, "regex", pattern=REGEX)
    (run / "P_A01_s1.ome.tif").unlink()
    # a file of channels and another file of the same field: their channel ids would clash
    tifffile.imwrite(run / "P_A01_s1.tif", np.zeros((8, 8, 3), np.uint8), photometric="rgb")
    tifffile.imwrite(run / "extra.tif", np.zeros((8, 8), np.uint8))
    sheet = tmp_path / "sheet.csv"
    pd.DataFrame({"path": ["run/P_A01_s1.tif", "run/extra.tif"], "plate": "P", "well": "A01", "field": 1,
                  "channel": ["", "2"]}).to_csv(sheet, index=False)
    with pytest.raises(ManifestError, match=r"P_A01_s1.tif holds 3 channels .*clash.*field 1: \S*extra.tif"):
        build_manifest(None, "samplesheet", sample_sheet=sheet)
    # a file of channels whose name carries one channel: refused at ingest, naming the file and the rule
    files = [{"field": 1, "channel": "1", "path": str(run / "P_A01_s1.tif")}]
    with pytest.raises(ValueError, match=r"P_A01_s1.tif: expected a single 2-D plane \(y, x\) for channel 1, got 3 "
                                         r"channels .*name carries no channel"):
        ingest_well(files, {"1": "DNA"}, tmp_path / "x.zarr", 16, 1.0)
    # a position past the file's channels
    files = [{"field": 1, "channel": "4", "path": str(run / "P_A01_s1.tif"), "file_channel": 4}]
    with pytest.raises(ValueError, match=r"P_A01_s1.tif: expected at least 4 channels"):
        ingest_well(files, {"4": "DNA"}, tmp_path / "x.zarr", 16, 1.0)
    # pages of unknown meaning (no axis metadata): neither taken as channels nor as planes
    tifffile.imwrite(run / "pages.tif", np.zeros((3, 8, 8), np.uint16), photometric="minisblack")
    with pytest.raises(ValueError, match=r"pages.tif: .*3 planes along an axis of unknown meaning"):
        with open_channels(run / "pages.tif"):
            pass
    assert not (tmp_path / "x.zarr").exists()
