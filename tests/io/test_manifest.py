"""Tests for plateseg.io.manifest: file names (touched empty files) -> manifest table."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from plateseg.io.manifest import build_manifest, check_complete
from plateseg.io.naming import SCHEMES, ManifestError, normalize_well, parse_name, row_index, row_letter

BASE_COLUMNS = ["plate", "well", "row", "column", "field", "channel", "path"]


def touch(folder, *names):
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    return folder


def keys(df, *cols):
    cols = cols or ("well", "field", "channel")
    return list(df[list(cols)].itertuples(index=False, name=None))


# --------------------------------------------------------------------------- wells


@pytest.mark.parametrize(
    "given, expected",
    [
        ("a1", ("A01", "A", 1)),
        ("A01", ("A01", "A", 1)),
        ("B12", ("B12", "B", 12)),
        ("P24", ("P24", "P", 24)),  # 384-well corner
        ("af48", ("AF48", "AF", 48)),  # 1536-well corner
        (" C3 ", ("C03", "C", 3)),
    ],
)
def test_normalize_well(given, expected):
    assert normalize_well(given) == expected


@pytest.mark.parametrize("bad", ["", "A", "1A", "A0", "A99", "BA01", "A-1", "A1B"])
def test_normalize_well_invalid(bad):
    with pytest.raises(ManifestError, match="invalid well"):
        normalize_well(bad)


def test_schemes_contract():
    assert SCHEMES == ("cellprofiler", "operetta", "cellvoyager", "regex", "samplesheet")
    assert issubclass(ManifestError, ValueError)


# --------------------------------------------------------------------------- parse_name


def test_parse_name_cellprofiler():
    assert parse_name("Plate-1_B12_s10_w2.tiff", "cellprofiler") == {
        "plate": "Plate-1", "well": "B12", "row": "B", "column": 12, "field": 10, "channel": "2",
    }
    # MetaXpress: underscores in the plate, GUID after the channel (BBBC021 names)
    got = parse_name("Week1_150607_B02_s1_w1EB868A72-19FC-46BB-BDFB-A5E7B6C0D0FA.tif", "cellprofiler")
    assert (got["plate"], got["well"], got["field"], got["channel"]) == ("Week1_150607", "B02", 1, "1")
    # a GUID starting with a digit does not leak into the channel
    assert parse_name("P_A01_s2_w23A4F0000-19FC-46BB-BDFB-A5E7B6C0D0FA.tif", "cellprofiler")["channel"] == "2"
    assert parse_name("P_A01_s1_w1ABCD-1234.tif", "cellprofiler")["channel"] == "1"
    assert parse_name("P_A01_s1_w12.tif", "cellprofiler")["channel"] == "12"
    assert parse_name("P_A01_w3.tif", "cellprofiler")["field"] == 1  # single-site MetaXpress
    for name in ("P_A01_s1_w1_thumb.tif", "P_A01_s1.tif", "overview.tif", "P_Z99_s1_w1.tif"):
        assert parse_name(name, "cellprofiler") is None, name


def test_parse_name_operetta_and_cellvoyager():
    got = parse_name("r16c24f12p03-ch2sk5fk1fl1.tiff", "operetta", plate="X")
    assert got == {
        "plate": "X", "well": "P24", "row": "P", "column": 24, "field": 12, "channel": "2",
        "plane": 3, "timepoint": 5,
    }
    assert parse_name("r32c48f01p01-ch1sk1fk1fl1.tiff", "operetta")["well"] == "AF48"
    assert parse_name("r00c01f01p01-ch1sk1fk1fl1.tiff", "operetta") is None
    got = parse_name("DEMO_AF01_T0002F011L01A03Z04C02.tif", "cellvoyager")
    assert got == {
        "plate": "DEMO", "well": "AF01", "row": "AF", "column": 1, "field": 11, "channel": "2",
        "plane": 4, "timepoint": 2,
    }


def test_parse_name_unknown_scheme():
    with pytest.raises(ManifestError, match="cellprofiler, operetta, cellvoyager, regex, samplesheet"):
        parse_name("a.tif", "metamorph")


# --------------------------------------------------------------------------- cellprofiler


def test_cellprofiler_manifest(tmp_path):
    names = [f"DEMO_{w}_s{s}_w{c}.tif" for w in ("B2", "A01") for s in (1, 2, 9, 10, 11) for c in (2, 1)]
    touch(tmp_path, *names, "notes.tif", "DEMO_A01_s1_w1.png", ".DEMO_A01_s1_w3.tif", "._DEMO_A01_s1_w1.tif")
    df, unmatched = build_manifest(tmp_path, "cellprofiler")

    assert list(df.columns) == BASE_COLUMNS
    assert len(df) == 20
    assert unmatched == ["notes.tif"]  # .png ignored, hidden files skipped
    # sorted by row, column, field (numerically: s9 < s10 < s11), channel
    assert keys(df)[:6] == [("A01", 1, "1"), ("A01", 1, "2"), ("A01", 2, "1"), ("A01", 2, "2"),
                            ("A01", 9, "1"), ("A01", 9, "2")]
    assert list(df["field"].iloc[8:10]) == [11, 11]
    assert set(df["well"]) == {"A01", "B02"}
    assert df.loc[df["well"] == "B02", "column"].eq(2).all()
    assert df["path"].iloc[0] == os.path.join(str(tmp_path), "DEMO_A01_s1_w1.tif")
    assert check_complete(df) == []


def test_column_dtypes(tmp_path):
    touch(tmp_path, "P_A01_s1_w1.tif", "P_A02_s10_w2.TIF")
    df, _ = build_manifest(tmp_path, "cellprofiler")
    for col in ("plate", "well", "row", "channel", "path"):
        assert pd.api.types.is_string_dtype(df[col]), col
    for col in ("column", "field"):
        assert df[col].dtype == "int64", col
    assert df.index.tolist() == [0, 1]
    assert isinstance(df["path"].iloc[0], str)


def test_sort_order_rows_plates_channels(tmp_path):
    touch(
        tmp_path,
        "Plate10_A01_s1_w1.tif", "Plate2_A01_s1_w1.tif",
        "Plate2_AA01_s1_w1.tif", "Plate2_Z01_s1_w1.tif", "Plate2_B10_s1_w1.tif", "Plate2_B9_s1_w1.tif",
        "Plate2_A01_s1_w10.tif", "Plate2_A01_s1_w2.tif",
    )
    df, _ = build_manifest(tmp_path, "cellprofiler")
    assert keys(df, "plate", "well", "channel") == [
        ("Plate2", "A01", "1"), ("Plate2", "A01", "2"), ("Plate2", "A01", "10"),
        ("Plate2", "B09", "1"), ("Plate2", "B10", "1"), ("Plate2", "Z01", "1"), ("Plate2", "AA01", "1"),
        ("Plate10", "A01", "1"),
    ]


def test_384_and_1536_wells(tmp_path):
    touch(tmp_path, "P384_P24_s1_w1.tif", "P1536_AF48_s1_w1.tif", "P1536_AA1_s1_w1.tif")
    df, unmatched = build_manifest(tmp_path, "cellprofiler")
    assert unmatched == []
    assert keys(df, "plate", "well", "row", "column") == [  # plates sort naturally: 384 < 1536
        ("P384", "P24", "P", 24), ("P1536", "AA01", "AA", 1), ("P1536", "AF48", "AF", 48),
    ]


def test_a1_and_a01_are_the_same_well(tmp_path):
    touch(tmp_path, "P_A1_s1_w1.tif", "P_A01_s1_w2.tif")
    df, _ = build_manifest(tmp_path, "cellprofiler")
    assert df["well"].tolist() == ["A01", "A01"]
    touch(tmp_path, "P_A01_s1_w1.tif")  # now A1 and A01 name the same image
    with pytest.raises(ManifestError, match="more than once") as err:
        build_manifest(tmp_path, "cellprofiler")
    assert "P_A1_s1_w1.tif" in str(err.value) and "P_A01_s1_w1.tif" in str(err.value)


def test_recursive_scan_and_paths_keep_base(tmp_path, monkeypatch):
    touch(tmp_path, "run/plateA/P_A01_s1_w1.tif", "run/plateA/sub/P_A02_s1_w1.tiff",
          "run/.snakemake/P_A03_s1_w1.tif", "run/plateA/thumbs/x.tif")
    monkeypatch.chdir(tmp_path)
    df, unmatched = build_manifest("run", "cellprofiler")
    assert df["path"].tolist() == [os.path.join("run", "plateA", "P_A01_s1_w1.tif"),
                                   os.path.join("run", "plateA", "sub", "P_A02_s1_w1.tiff")]
    assert unmatched == ["plateA/thumbs/x.tif"]


# --------------------------------------------------------------------------- operetta / cellvoyager


def test_operetta_plate_from_argument(tmp_path):
    names = [f"r{r:02d}c{c:02d}f{f:02d}p01-ch{ch}sk1fk1fl1.tiff"
             for r, c in ((1, 1), (16, 24)) for f in (1, 10) for ch in (1, 2)]
    touch(tmp_path, *names)
    df, unmatched = build_manifest(tmp_path, "operetta", plate="screen1")
    assert list(df.columns) == BASE_COLUMNS + ["plane", "timepoint"]
    assert unmatched == []
    assert set(df["plate"]) == {"screen1"}
    assert keys(df)[:4] == [("A01", 1, "1"), ("A01", 1, "2"), ("A01", 10, "1"), ("A01", 10, "2")]
    assert df["well"].iloc[-1] == "P24"
    assert df["plane"].dtype == "int64" and df["timepoint"].dtype == "int64"


def test_operetta_plate_from_folder_name(tmp_path):
    folder = tmp_path / "MyPlate-01"
    touch(folder, "r02c03f01p01-ch1sk1fk1fl1.tiff", "r02c03f01p01-ch1sk2fk1fl1.tiff",
          "r02c03f01p02-ch1sk1fk1fl1.tiff")
    df, _ = build_manifest(folder, "operetta")
    assert set(df["plate"]) == {"MyPlate-01"}
    assert keys(df, "well", "plane", "timepoint") == [("B03", 1, 1), ("B03", 1, 2), ("B03", 2, 1)]
    # Opera Phenix export: <measurement>/Images/ -> the measurement folder names the plate
    images = tmp_path / "Phenix7" / "Images"
    touch(images, "r01c01f01p01-ch1sk1fk1fl1.tiff", "Index.idx.xml")
    df, _ = build_manifest(images, "operetta")
    assert df["plate"].tolist() == ["Phenix7"]


def test_cellvoyager(tmp_path):
    names = [f"CV1_{w}_T0001F{f:03d}L01A0{c}Z01C0{c}.tif" for w in ("C05", "B07") for f in (1, 2, 12) for c in (1, 2)]
    touch(tmp_path, *names, "CV1_B07_T0001F001L01A01Z01C01.tif.bak", "CV1_MIP.tif")
    df, unmatched = build_manifest(tmp_path, "cellvoyager")
    assert unmatched == ["CV1_MIP.tif"]
    assert len(df) == 12
    assert set(df["channel"]) == {"1", "2"}
    assert keys(df)[:6] == [("B07", 1, "1"), ("B07", 1, "2"), ("B07", 2, "1"), ("B07", 2, "2"),
                            ("B07", 12, "1"), ("B07", 12, "2")]
    assert set(df["timepoint"]) == {1} and set(df["plane"]) == {1}


# --------------------------------------------------------------------------- regex


def test_regex_scheme(tmp_path):
    touch(tmp_path, "exp3--R02--C11--P00012--Z2--T3--DAPI.tif", "exp3--R02--C11--P00012--Z2--T3--GFP.tif",
          "exp3--R01--C01--P00002--Z1--T1--DAPI.tif", "other.tif")
    pattern = (r"(?P<plate>[a-z0-9]+)--R(?P<row>\d+)--C(?P<column>\d+)--P(?P<field>\d+)"
               r"--Z(?P<plane>\d+)--T(?P<timepoint>\d+)--(?P<channel>[A-Z]+)")
    df, unmatched = build_manifest(tmp_path, "regex", pattern=pattern)
    assert list(df.columns) == BASE_COLUMNS + ["plane", "timepoint"]
    assert keys(df, "plate", "well", "field", "channel", "plane", "timepoint") == [
        ("exp3", "A01", 2, "DAPI", 1, 1), ("exp3", "B11", 12, "DAPI", 2, 3), ("exp3", "B11", 12, "GFP", 2, 3),
    ]
    assert unmatched == ["other.tif"]


def test_regex_well_group(tmp_path):
    touch(tmp_path, "img_B3_f10_DAPI.tif", "img_B3_f2_DAPI.tif", "img_B3_f2_GFP.tif", "readme.tif")
    df, unmatched = build_manifest(tmp_path, "regex", plate="P7",
                                   pattern=r"img_(?P<well>[A-P]\d+)_f(?P<field>\d+)_(?P<channel>\w+)")
    assert list(df.columns) == BASE_COLUMNS
    assert keys(df, "plate", "well", "field", "channel") == [
        ("P7", "B03", 2, "DAPI"), ("P7", "B03", 2, "GFP"), ("P7", "B03", 10, "DAPI"),
    ]
    assert unmatched == ["readme.tif"]


def test_regex_numeric_row_and_defaults(tmp_path):
    touch(tmp_path / "PL9", "row02_col11.tif", "row27_col01.tif")
    df, _ = build_manifest(tmp_path / "PL9", "regex",
                           pattern=r"row(?P<row>\d+)_col(?P<column>\d+)\.tif")
    assert keys(df, "plate", "well", "row", "column", "field", "channel") == [
        ("PL9", "B11", "B", 11, 1, "1"), ("PL9", "AA01", "AA", 1, 1, "1"),
    ]


def test_regex_on_relative_path(tmp_path):
    touch(tmp_path, "PlateX/A01/f1_c1.tif", "PlateX/A01/f2_c1.tif", "PlateY/H12/f1_c1.tif")
    df, _ = build_manifest(tmp_path, "regex",
                           pattern=r"(?P<plate>[^/]+)/(?P<well>\w+)/f(?P<field>\d+)_c(?P<channel>\d+)\.tif")
    assert keys(df, "plate", "well", "field") == [("PlateX", "A01", 1), ("PlateX", "A01", 2), ("PlateY", "H12", 1)]


@pytest.mark.parametrize(
    "pattern, has",
    [
        (r"(?P<plate>\w+)_(?P<site>\d+)", "plate, site"),
        (r"(?P<row>[A-P])\d+", "row"),
        (r"[A-P]\d+", "no named groups"),
    ],
)
def test_regex_without_required_groups(tmp_path, pattern, has):
    touch(tmp_path, "P_A01.tif")
    with pytest.raises(ManifestError, match="input.pattern") as err:
        build_manifest(tmp_path, "regex", pattern=pattern)
    message = str(err.value)
    assert has in message and "`well`" in message and "`row` and `column`" in message


def test_regex_invalid_or_missing(tmp_path):
    touch(tmp_path, "P_A01.tif")
    with pytest.raises(ManifestError, match="input.pattern"):
        build_manifest(tmp_path, "regex", pattern=r"(?P<well>[A-P\d+")
    with pytest.raises(ManifestError, match="input.pattern"):
        build_manifest(tmp_path, "regex")
    with pytest.raises(ManifestError, match="input.pattern"):
        parse_name("P_A01.tif", "regex", pattern=r"(?P<field>\d+)")


# --------------------------------------------------------------------------- sample sheet


def test_samplesheet_relative_and_absolute_paths(tmp_path):
    touch(tmp_path, "imgs/a.tif", "imgs/b.tif", "elsewhere/c.tif")
    absolute = tmp_path / "elsewhere" / "c.tif"
    sheet = tmp_path / "samples.csv"
    sheet.write_text(
        "path,plate,well,field,channel\n"
        "imgs/a.tif,S1,b2,1,DNA\n"
        f"{absolute},S1,A1,2,DNA\n"
        "imgs/b.tif,S1,B02,1,actin\n"
    )
    df, unmatched = build_manifest(None, "samplesheet", sample_sheet=sheet)
    assert unmatched == []
    assert list(df.columns) == BASE_COLUMNS
    assert keys(df, "well", "field", "channel", "path") == [
        ("A01", 2, "DNA", str(absolute)),
        ("B02", 1, "actin", os.path.join(str(tmp_path), "imgs/b.tif")),
        ("B02", 1, "DNA", os.path.join(str(tmp_path), "imgs/a.tif")),
    ]
    assert df["field"].dtype == "int64" and pd.api.types.is_string_dtype(df["channel"])


def test_samplesheet_row_column_and_defaults(tmp_path):
    touch(tmp_path, "x.tif")
    sheet = tmp_path / "s.csv"
    sheet.write_text("path,plate,row,column\nx.tif,P,3,7\n")
    df, _ = build_manifest(tmp_path, "samplesheet", sample_sheet=str(sheet))
    assert keys(df, "well", "row", "column", "field", "channel") == [("C07", "C", 7, 1, "1")]


def test_samplesheet_missing_columns(tmp_path):
    sheet = tmp_path / "bad.csv"
    sheet.write_text("file,plate,well\nx.tif,P,A01\n")
    with pytest.raises(ManifestError, match="bad.csv") as err:
        build_manifest(None, "samplesheet", sample_sheet=sheet)
    assert "path" in str(err.value)
    sheet.write_text("path,plate\nx.tif,P\n")
    with pytest.raises(ManifestError, match=r"bad\.csv.*well \(or row and column\)"):
        build_manifest(None, "samplesheet", sample_sheet=sheet)


def test_samplesheet_missing_file_names_row(tmp_path):
    touch(tmp_path, "a.tif")
    sheet = tmp_path / "s.csv"
    sheet.write_text("path,plate,well\na.tif,P,A01\nmissing.tif,P,A02\n")
    with pytest.raises(ManifestError, match=r"row 2 .*missing\.tif"):
        build_manifest(None, "samplesheet", sample_sheet=sheet)


def test_samplesheet_required(tmp_path):
    with pytest.raises(ManifestError, match="input.sample_sheet"):
        build_manifest(tmp_path, "samplesheet")
    with pytest.raises(ManifestError, match="input.sample_sheet"):
        build_manifest(tmp_path, "samplesheet", sample_sheet=tmp_path / "nope.csv")


# --------------------------------------------------------------------------- errors


def test_nothing_matched_lists_examples(tmp_path):
    touch(tmp_path, "scan_001.tif", "scan_002.tif", "overview.tiff")
    with pytest.raises(ManifestError) as err:
        build_manifest(tmp_path, "cellprofiler")
    message = str(err.value)
    assert "input.dir" in message and "input.scheme" in message and "'cellprofiler'" in message
    assert "scan_001.tif" in message and "overview.tiff" in message
    assert "{plate}_{well}_s{site}_w{channel}" in message


def test_no_images_at_all(tmp_path):
    touch(tmp_path, "readme.txt")
    with pytest.raises(ManifestError, match="input.dir.*no image files"):
        build_manifest(tmp_path, "operetta")


def test_missing_folder(tmp_path):
    with pytest.raises(ManifestError, match=r"does not exist.*input\.dir|input\.dir.*does not exist"):
        build_manifest(tmp_path / "absent", "cellprofiler")


def test_duplicates(tmp_path):
    touch(tmp_path, "P_A01_s1_w1.tif", "P_A01_s1_w1.tiff", "P_A02_s1_w1.tif")
    with pytest.raises(ManifestError, match="more than once") as err:
        build_manifest(tmp_path, "cellprofiler")
    assert "well=A01" in str(err.value) and "P_A01_s1_w1.tiff" in str(err.value)


def test_unknown_scheme(tmp_path):
    touch(tmp_path, "P_A01_s1_w1.tif")
    with pytest.raises(ManifestError, match="input.scheme") as err:
        build_manifest(tmp_path, "incucyte")
    for scheme in SCHEMES:
        assert scheme in str(err.value)


def test_extensions_argument(tmp_path):
    touch(tmp_path, "P_A01_s1_w1.PNG", "P_A01_s1_w2.tif")
    df, _ = build_manifest(tmp_path, "cellprofiler", extensions=(".png",))
    assert df["channel"].tolist() == ["1"]


# --------------------------------------------------------------------------- completeness


def test_check_complete_reports_gaps(tmp_path):
    names = [f"P_{w}_s{s}_w{c}.tif" for w in ("A01", "A02") for s in (1, 2) for c in (1, 2)]
    names.remove("P_A02_s2_w2.tif")
    names += ["P_B01_s1_w1.tif", "P_B01_s1_w2.tif"]  # field 2 missing entirely
    touch(tmp_path, *names)
    df, _ = build_manifest(tmp_path, "cellprofiler")
    problems = check_complete(df)
    assert len(problems) == 2
    assert any("A02" in p and "field 2" in p and "channel 2" in p for p in problems)
    assert any("B01" in p and "field 2" in p for p in problems)


def test_check_complete_across_plates_and_empty():
    df = pd.DataFrame({"plate": ["P1", "P1", "P2"], "well": ["A01"] * 3, "field": [1] * 3,
                       "channel": ["1", "2", "1"]})
    problems = check_complete(df)
    assert any(p.startswith("plate P2") and "channel(s) 2" in p for p in problems)
    assert check_complete(df.iloc[:0]) == []


@pytest.mark.parametrize("index", [1, 2, 16, 26, 27, 32, 48])
def test_row_letter_and_index_are_inverse(index):
    assert row_index(row_letter(index)) == index


def test_row_letter_rejects_rows_beyond_a_plate():
    with pytest.raises(ManifestError, match="out of range"):
        row_letter(49)


def test_several_planes_of_one_field_and_channel_are_reported_with_their_files(tmp_path):
    import tifffile

    from plateseg.io.manifest import build_manifest, check_single_plane

    for t in (1, 2):
        tifffile.imwrite(tmp_path / f"P1_B03_T000{t}F001L01A01Z01C01.tif", np.zeros((8, 8), np.uint16))
    tifffile.imwrite(tmp_path / "P1_B04_T0001F001L01A01Z01C01.tif", np.zeros((8, 8), np.uint16))
    manifest, _ = build_manifest(tmp_path, "cellvoyager")
    problems = check_single_plane(manifest)
    assert len(problems) == 1
    assert "well B03, field 1, channel 1: 2 files (timepoint 1, 2" in problems[0]
    assert "T0001" in problems[0] and "T0002" in problems[0]


def test_z_planes_are_selected_or_allowed_for_projection_but_time_points_are_not(tmp_path):
    import tifffile

    from plateseg.io.manifest import build_manifest, check_single_plane, select_plane

    for z in (1, 2, 3):
        tifffile.imwrite(tmp_path / f"P1_B03_T0001F001L01A01Z0{z}C01.tif", np.zeros((8, 8), np.uint16))
    tifffile.imwrite(tmp_path / "P1_B04_T0001F001L01A01Z01C01.tif", np.zeros((8, 8), np.uint16))
    manifest, _ = build_manifest(tmp_path, "cellvoyager")
    assert len(check_single_plane(manifest)) == 1
    assert check_single_plane(manifest, ignore=("plane",)) == []
    assert select_plane(manifest, 1)["path"].map(lambda p: p.split("/")[-1]).tolist() == [
        "P1_B03_T0001F001L01A01Z01C01.tif", "P1_B04_T0001F001L01A01Z01C01.tif"]
    # B04 has no plane 2: named, not dropped
    with pytest.raises(ValueError, match=r"input.z_projection: 2: 1 field/channel .*well B04"):
        select_plane(manifest, 2)
    # a second time point is still refused when planes are projected
    tifffile.imwrite(tmp_path / "P1_B04_T0002F001L01A01Z01C01.tif", np.zeros((8, 8), np.uint16))
    manifest, _ = build_manifest(tmp_path, "cellvoyager")
    problems = check_single_plane(manifest, ignore=("plane",))
    assert len(problems) == 1 and "well B04" in problems[0] and "timepoint 1, 2" in problems[0]
