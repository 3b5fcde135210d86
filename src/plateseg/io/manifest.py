"""Manifest of an imaging run: one row per image file.

The manifest is built when the Snakefile loads, so it looks at file
*names* (never at pixels): a folder of TIFF files named by one of the
supported schemes, or a sample-sheet CSV, becomes a :class:`pandas.DataFrame`
with the columns

``plate, well, row, column, field, channel, path`` (+ ``plane``, ``timepoint``
when the scheme has them, + ``file_channel`` when a file holds several channels)

Files of several channels: a file whose name carries no channel (a ``regex``
without a ``channel`` group, a sample-sheet row without one) is the only kind
whose TIFF header is read (tifffile, header only). When it holds C > 1 channels
on one channel axis (an OME-TIFF / ImageJ / tifffile ``C`` axis, or the samples
of an RGB / RGBA file: R, G, B, alpha), it becomes C rows with channel ids
``"1"`` .. ``"C"`` in the file's order (RGB: R = 1, G = 2, B = 3, alpha = 4) and
``file_channel`` 1 .. C (0 for a file of one plane). Such a file must be the
only file of its field: another file there is an error naming both (its
channel ids would clash). A file that holds z-planes or time points is an
error; a file that cannot be read is left to its well's ingest, which names it.

Naming schemes (``input.scheme`` in the config):

``cellprofiler``
    ``{plate}_{well}_s{site}_w{channel}.tif`` (MetaXpress / CellProfiler
    examples), e.g. ``DEMO_A01_s1_w1.tif``, ``Plate-1_B12_s10_w2.tiff``.
    Wells may be written ``A1`` or ``A01``; the site part may be left out
    (single-site acquisitions, field 1); a MetaXpress suffix after the channel
    digits (``_w1EB868A72-19FC-46BB-BDFB-A5E7B6C0D0FA.tif``, ``_w1ABCD-12.tif``)
    is accepted and dropped.
``operetta``
    PerkinElmer Operetta / Opera Phenix ``r01c01f01p01-ch1sk1fk1fl1.tiff``:
    row, column, field, plane (``p``), channel (``ch``), timepoint (``sk``).
    The plate is not in the name: it is the ``plate`` argument, else the name
    of the input folder (its parent when the folder is the export's
    ``Images`` folder).
``cellvoyager``
    Yokogawa CellVoyager ``{plate}_{well}_T0001F001L01A01Z01C01.tif``:
    timepoint ``T``, field ``F``, plane ``Z``, channel ``C`` (``L`` and ``A``
    are parsed and dropped).
``regex``
    A user regex (``input.pattern``) with named groups. Required: ``well``, or
    both ``row`` and ``column`` (row as a letter or a 1-based number).
    Optional: ``plate`` (else the ``plate`` argument / folder name), ``field``
    (or its alias ``site``; default 1), ``channel`` (default ``"1"``),
    ``plane`` and ``timepoint`` (default 1 when the group did not take part in
    the match). The pattern must match the whole file name, with or without
    its extension; a pattern containing ``/`` is matched against the path
    relative to the input folder instead.
``samplesheet``
    A CSV (``input.sample_sheet``) with columns ``path, plate, well`` (or
    ``row`` + ``column``), optional ``field, channel, plane, timepoint``.
    Relative paths are relative to the CSV's folder.

Numeric channels from file names are written without leading zeros
(``C01`` -> ``"1"``, ``ch1`` -> ``"1"``, ``w2`` -> ``"2"``), so a channel is
named the same way whatever the microscope; channel names (from a sample sheet
or a regex) are kept as written.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Iterable

import pandas as pd

from plateseg.io.naming import (
    EXPECTED_NAMES,
    SCHEMES,
    ManifestError,
    channel_id,
    name_parser,
    normalize_well,
    row_index,
    well_from_row_column,
)

__all__ = ["build_manifest", "check_complete", "check_single_plane", "select_plane"]


COLUMNS: tuple[str, ...] = ("plate", "well", "row", "column", "field", "channel", "path")
OPTIONAL_COLUMNS: tuple[str, ...] = ("plane", "timepoint")
#: position of a row's channel on its file's channel axis (1-based; 0: a file of one plane), when a file has several
FILE_CHANNEL = "file_channel"


# --------------------------------------------------------------------------- scanning
def _scan(base: str, extensions: tuple[str, ...]) -> list[tuple[str, str]]:
    """``(relative posix path, path joined with base)`` of image files under ``base``, hidden ones skipped."""
    found: list[tuple[str, str]] = []
    seen_dirs = {os.path.realpath(base)}
    stack = [("", base)]
    while stack:
        rel, folder = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith("."):
                    continue
                if name.lower().endswith(extensions):
                    if entry.is_file():
                        found.append((rel + name, entry.path))
                elif entry.is_dir():
                    if entry.is_symlink():  # guard against symlink loops
                        real = os.path.realpath(entry.path)
                        if real in seen_dirs:
                            continue
                        seen_dirs.add(real)
                    stack.append((rel + name + "/", entry.path))
    found.sort()
    return found


def _folder_plate_name(input_dir: str) -> str:
    path = os.path.normpath(os.path.abspath(input_dir))
    name = os.path.basename(path)
    if name.lower() == "images":  # Operetta / Opera Phenix export: <measurement>/Images/
        name = os.path.basename(os.path.dirname(path)) or name
    return name


def _examples(items: list[str], n: int = 5) -> str:
    shown = ", ".join(repr(x) for x in items[:n])
    return shown + (f" (and {len(items) - n} more)" if len(items) > n else "")


_NATURAL_SPLIT = re.compile(r"(\d+)")


def _natural_key(text: str) -> tuple:
    return tuple(int(p) if i % 2 else p.lower() for i, p in enumerate(_NATURAL_SPLIT.split(text)))


def _rank(values: pd.Series) -> pd.Series:
    order = {v: i for i, v in enumerate(sorted(set(values), key=_natural_key))}
    return values.map(order)


def _finish(records: dict[str, list], label: str) -> pd.DataFrame:
    """Columns in contract order, dtypes fixed, duplicates rejected, sorted."""
    columns = list(COLUMNS) + [c for c in (*OPTIONAL_COLUMNS, FILE_CHANNEL) if c in records]
    df = pd.DataFrame({c: records[c] for c in columns})
    for c in ("plate", "well", "row", "channel", "path"):
        df[c] = df[c].astype(str)
    for c in ("column", "field", *[c for c in (*OPTIONAL_COLUMNS, FILE_CHANNEL) if c in df]):
        df[c] = df[c].astype("int64")

    key = ["plate", "well", "field", "channel", *[c for c in OPTIONAL_COLUMNS if c in df]]
    dup = df.duplicated(key, keep=False)
    if dup.any():
        groups = df[dup].groupby(key, sort=True)["path"].apply(list)
        lines = [
            "  " + " ".join(f"{k}={v}" for k, v in zip(key, idx)) + ": " + ", ".join(paths)
            for idx, paths in list(groups.items())[:5]
        ]
        more = f"\n  ... and {len(groups) - 5} more" if len(groups) > 5 else ""
        raise ManifestError(
            f"{label}: {len(groups)} image(s) appear more than once (same {', '.join(key)}):\n"
            + "\n".join(lines)
            + more
            + "\nRemove the copies (e.g. A1 and A01 spellings, or .tif and .tiff) or check `input.scheme`."
        )

    sort_cols = ["_plate", "_row", "column", "field", "_channel", *[c for c in OPTIONAL_COLUMNS if c in df], "path"]
    df["_plate"] = _rank(df["plate"])
    df["_row"] = df["row"].map(row_index)
    df["_channel"] = _rank(df["channel"])
    df = df.sort_values(sort_cols, kind="stable").drop(columns=["_plate", "_row", "_channel"])
    return df.reset_index(drop=True)


def _file_channel_count(path: str) -> int:
    """Channels of a TIFF file from its header (1 for an unreadable file: its well's ingest names it)."""
    from plateseg.io.ingest import channel_layout, tiff_layout

    try:
        axes, shape, _ = tiff_layout(path)
    except ValueError:
        return 1
    try:
        return channel_layout(path, axes, shape)[1]
    except ValueError as err:  # z-planes or time points in one file
        raise ManifestError(f"{err} (a file whose name carries no channel is read as a file of channels)") from err


def split_file_channels(records: dict[str, list], unnamed: Iterable[str], label: str = "the run") -> dict[str, list]:
    """Records (column -> values, one per file) with every file of ``unnamed`` (paths whose name carries no
    channel) that holds C > 1 channels (its TIFF header) replaced by C records, channel ids ``"1"`` .. ``"C"``
    and ``file_channel`` 1 .. C; the others get ``file_channel`` 0. Unchanged when no file has several channels.

    Raises ManifestError when another file sits at the position (plate, well, field, plane, timepoint) of a
    file of channels, naming both, or when a file holds z-planes or time points.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np, tifffile
    >>> p = str(pathlib.Path(tempfile.mkdtemp()) / "he.tif")
    >>> tifffile.imwrite(p, np.zeros((8, 8, 3), np.uint8), photometric="rgb")
    >>> rec = {"plate": ["P"], "well": ["A01"], "row": ["A"], "column": [1], "field": [1], "channel": ["1"],
    ...        "path": [p]}
    >>> out = split_file_channels(rec, [p])
    >>> out["channel"], out["file_channel"]
    (['1', '2', '3'], [1, 2, 3])
    """
    counts = {p: _file_channel_count(p) for p in dict.fromkeys(unnamed)}
    if all(n == 1 for n in counts.values()):
        return records
    position = [c for c in records if c not in ("channel", "path")]
    at: dict[tuple, list[int]] = defaultdict(list)
    for i in range(len(records["path"])):
        at[tuple(records[c][i] for c in position)].append(i)
    for key, rows in at.items():
        split = [i for i in rows if counts.get(records["path"][i], 1) > 1]
        if split and len(rows) > 1:
            path = records["path"][split[0]]
            others = [records["path"][i] for i in rows if i != split[0]]
            where = ", ".join(f"{c} {v}" for c, v in zip(position, key) if c not in ("row", "column"))
            raise ManifestError(
                f"{label}: {path} holds {counts[path]} channels (ids 1..{counts[path]}, its name carries no channel), "
                f"which clash with the other file(s) of {where}: {', '.join(others)}. A field takes one file of "
                "channels, or one file per channel with the channel in its name (input.scheme / input.pattern / the "
                "sample sheet's channel column)")
    out: dict[str, list] = {c: [] for c in (*records, FILE_CHANNEL)}
    for i, path in enumerate(records["path"]):
        n = counts.get(path, 1)
        for k in range(1, n + 1) if n > 1 else (0,):
            for c in records:
                out[c].append(str(k) if c == "channel" and k else records[c][i])
            out[FILE_CHANNEL].append(k)
    return out


def unlisted_file_channels(manifest: pd.DataFrame, names) -> str | None:
    """A warning naming the channels of files of several channels that ``names`` (config ``channels.names``)
    does not list, so that they are not ingested; None when there are none.

    Examples
    --------
    >>> df = pd.DataFrame({"channel": ["1", "2", "3", "4"], "path": ["he.tif"] * 4, "file_channel": [1, 2, 3, 4]})
    >>> unlisted_file_channels(df, {"1": "R", "2": "G", "3": "B"})
    'channel(s) 4 of 1 file(s) of several channels (e.g. he.tif) are not in config key channels.names: not ingested'
    """
    if FILE_CHANNEL not in manifest:
        return None
    rows = manifest[(manifest[FILE_CHANNEL] > 0) & ~manifest["channel"].isin([str(n) for n in names])]
    if rows.empty:
        return None
    ids = ", ".join(sorted(rows["channel"].unique(), key=_natural_key))
    return (f"channel(s) {ids} of {rows['path'].nunique()} file(s) of several channels (e.g. {rows['path'].iloc[0]}) "
            "are not in config key channels.names: not ingested")


# --------------------------------------------------------------------------- sample sheet
def _read_sample_sheet(sample_sheet, plate: str | None) -> pd.DataFrame:
    sheet = os.fspath(sample_sheet)
    if not os.path.isfile(sheet):
        raise ManifestError(f"sample sheet {sheet!r} (config key `input.sample_sheet`) does not exist")
    try:
        table = pd.read_csv(sheet, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ManifestError(f"sample sheet {sheet!r} (config key `input.sample_sheet`) is not a readable CSV: {err}") from err
    table.columns = [str(c).strip().lower() for c in table.columns]

    missing = [c for c in ("path",) if c not in table]
    if "plate" not in table and plate is None:
        missing.append("plate")
    if "well" not in table and not {"row", "column"} <= set(table.columns):
        missing.append("well (or row and column)")
    if missing:
        raise ManifestError(
            f"sample sheet {sheet!r} (config key `input.sample_sheet`) lacks column(s) {', '.join(missing)}; "
            f"it has {', '.join(table.columns) or 'none'}. Required: path, plate, well (or row + column); "
            "optional: field, channel, plane, timepoint"
        )

    folder = os.path.dirname(sheet)
    has_plane, has_timepoint = "plane" in table, "timepoint" in table
    records: dict[str, list] = defaultdict(list)
    problems: list[str] = []
    absent: list[str] = []
    unnamed: list[str] = []  # paths of rows without a channel: maybe files of several channels
    for i, rec in enumerate(table.to_dict("records"), start=1):
        where = f"row {i} (line {i + 1})"
        raw_path = rec["path"].strip()
        if not raw_path:
            problems.append(f"{where}: empty path")
            continue
        path = raw_path if os.path.isabs(raw_path) else os.path.join(folder, raw_path)
        if not os.path.exists(path):
            absent.append(f"{where}: {path}")
            continue
        try:
            if "well" in rec and rec["well"].strip():
                well, row, column = normalize_well(rec["well"])
            else:
                well, row, column = well_from_row_column(rec["row"], rec["column"])
            field = int(rec["field"]) if rec.get("field", "").strip() else 1
            plane = int(rec["plane"]) if rec.get("plane", "").strip() else 1
            timepoint = int(rec["timepoint"]) if rec.get("timepoint", "").strip() else 1
        except (ManifestError, ValueError, KeyError) as err:
            problems.append(f"{where}: {err}")
            continue
        plate_name = rec.get("plate", "").strip() or plate
        if not plate_name:
            problems.append(f"{where}: empty plate")
            continue
        channel = rec.get("channel", "").strip()
        if not channel:
            unnamed.append(path)
        records["plate"].append(plate_name)
        records["well"].append(well)
        records["row"].append(row)
        records["column"].append(column)
        records["field"].append(field)
        records["channel"].append(channel_id(channel) if channel else "1")
        records["path"].append(path)
        if has_plane:
            records["plane"].append(plane)
        if has_timepoint:
            records["timepoint"].append(timepoint)

    if absent:
        raise ManifestError(
            f"sample sheet {sheet!r}: {len(absent)} file(s) do not exist (relative paths are taken from the "
            f"sheet's folder {folder or '.'!r}): " + "; ".join(absent[:5]) + (" ..." if len(absent) > 5 else "")
        )
    if problems:
        raise ManifestError(f"sample sheet {sheet!r}: " + "; ".join(problems[:5]) + (" ..." if len(problems) > 5 else ""))
    if not records:
        raise ManifestError(f"sample sheet {sheet!r} (config key `input.sample_sheet`) lists no images")
    label = f"sample sheet {sheet!r}"
    return _finish(split_file_channels(records, unnamed, label), label)


# --------------------------------------------------------------------------- public
def build_manifest(
    input_dir,
    scheme: str,
    pattern: str | None = None,
    sample_sheet=None,
    plate: str | None = None,
    extensions: Iterable[str] = (".tif", ".tiff"),
) -> tuple[pd.DataFrame, list[str]]:
    """Build the manifest of an imaging run from file names (no pixel is read; the TIFF header of a file whose
    name carries no channel is, to count its channels: see the module's docstring).

    Parameters
    ----------
    input_dir : str or path-like
        Folder of images (config ``input.dir``), scanned recursively; hidden files
        and folders are skipped. Paths in the manifest are this folder joined with
        the relative file path, as given (symlinks are not resolved). Not used for
        ``scheme="samplesheet"`` (may be None).
    scheme : str
        One of :data:`SCHEMES` (config ``input.scheme``).
    pattern : str, optional
        Regex with named groups for ``scheme="regex"`` (config ``input.pattern``).
    sample_sheet : str or path-like, optional
        CSV for ``scheme="samplesheet"`` (config ``input.sample_sheet``).
    plate : str, optional
        Plate name for schemes whose names do not carry one (default: the input
        folder's name).
    extensions : iterable of str
        File extensions of images, case-insensitive.

    Returns
    -------
    manifest : pandas.DataFrame
        Columns ``plate, well, row, column, field, channel, path`` (+ ``plane``,
        ``timepoint`` when the scheme has them, + ``file_channel`` when a file
        holds several channels: one row per channel), sorted by plate, row, column,
        field, channel (numbers sort numerically: s9 before s10, row Z before AA).
    unmatched : list of str
        Image files (relative to ``input_dir``) whose names do not follow the scheme.

    Raises
    ------
    ManifestError
        Unknown scheme, missing folder, no file matching the scheme, duplicate
        images, an invalid regex / sample sheet, a file of channels beside other
        files of its field, or a file of z-planes or time points.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> for n in ("P1_A01_s1_w1.tif", "P1_A01_s1_w2.tif", "notes.tif"):
    ...     (d / n).touch()
    >>> df, unmatched = build_manifest(d, "cellprofiler")
    >>> list(df["channel"]), unmatched
    (['1', '2'], ['notes.tif'])
    """
    if scheme not in SCHEMES:
        raise ManifestError(f"unknown input.scheme {scheme!r}; valid schemes: {', '.join(SCHEMES)}")
    if scheme == "samplesheet":
        if sample_sheet is None:
            raise ManifestError("input.scheme 'samplesheet' needs a CSV file in config key `input.sample_sheet`")
        return _read_sample_sheet(sample_sheet, plate), []

    if input_dir is None:
        raise ManifestError(f"input.scheme {scheme!r} needs an image folder in config key `input.dir`")
    base = os.fspath(input_dir)
    if not os.path.isdir(base):
        what = "is not a folder" if os.path.exists(base) else "does not exist"
        raise ManifestError(f"input folder {base!r} (config key `input.dir`) {what}")
    exts = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
    if plate is None:
        plate = _folder_plate_name(base)
    parse, has_plane, has_timepoint = name_parser(scheme, pattern, plate)

    files = _scan(base, exts)
    if not files:
        raise ManifestError(
            f"input folder {base!r} (config key `input.dir`) holds no image files ({'/'.join(exts)}); "
            f"expected names like {EXPECTED_NAMES[scheme]} (config key `input.scheme`)"
        )

    records: dict[str, list] = {c: [] for c in COLUMNS}
    if has_plane:
        records["plane"] = []
    if has_timepoint:
        records["timepoint"] = []
    keys = [k for k in records if k != "path"]
    unmatched: list[str] = []
    for rel, path in files:
        parsed = parse(rel)
        if parsed is None:
            unmatched.append(rel)
            continue
        for k in keys:
            records[k].append(parsed[k])
        records["path"].append(path)

    if not records["path"]:
        expected = EXPECTED_NAMES[scheme] if scheme != "regex" else f"the regex {pattern!r} (config key `input.pattern`)"
        raise ManifestError(
            f"no image file in {base!r} (config key `input.dir`) matches input.scheme {scheme!r}: "
            f"expected names like {expected}; found {len(files)} file(s) such as {_examples(unmatched)}"
        )
    label = f"input folder {base!r} (config key `input.dir`)"
    # names without a channel (a regex without a channel group): their headers say whether they hold several
    unnamed = records["path"] if scheme == "regex" and "channel" not in re.compile(pattern).groupindex else []
    return _finish(split_file_channels(records, unnamed, label), label), unmatched


def _well_key(well) -> tuple:
    try:
        _, row, column = normalize_well(str(well))
    except ManifestError:
        return (0, 0, str(well))
    return (row_index(row), column, "")


def check_single_plane(manifest: pd.DataFrame, ignore=()) -> list[str]:
    """Positions that several files claim: a field and channel with more than one plane or time point.

    plateseg segments one 2-D plane per field and channel; a z-stack or time series (``plane`` /
    ``timepoint`` in the file names) would otherwise keep only one of its files. Returns one line per
    position, naming its files (empty when every field and channel has one file). Files of one position that
    differ only in the columns ``ignore`` (``("plane",)`` when z-stacks are projected at ingest) are allowed.

    Examples
    --------
    >>> df = pd.DataFrame({"plate": ["P", "P"], "well": ["A01", "A01"], "field": [1, 1], "channel": ["1", "1"],
    ...                    "plane": [1, 2], "path": ["z1.tif", "z2.tif"]})
    >>> check_single_plane(df)
    ['plate P, well A01, field 1, channel 1: 2 files (plane 1, 2): z1.tif, z2.tif']
    >>> check_single_plane(df, ignore=("plane",))
    []
    """
    if len(manifest) == 0:
        return []
    extra = [c for c in OPTIONAL_COLUMNS if c in manifest]
    ignored = [c for c in extra if c in ignore]
    problems = []
    positions = ["plate", "well", "field", "channel"]
    shared = manifest[manifest.duplicated(positions, keep=False)]  # only positions with several files
    for (plate, well, field, channel), group in shared.groupby(positions, sort=True):
        explained = ignored and not group.duplicated(ignored).any() and all(
            group[c].nunique() <= 1 for c in extra if c not in ignored)
        if len(group) > 1 and not explained:
            axes = "; ".join(f"{c} {', '.join(str(v) for v in sorted(group[c].unique()))}" for c in extra
                             if group[c].nunique() > 1)
            problems.append(f"plate {plate}, well {well}, field {field}, channel {channel}: {len(group)} files "
                            f"({axes or 'same position'}): {', '.join(sorted(map(str, group['path'])))}")
    return problems


def well_records(manifest: pd.DataFrame, with_planes: bool = False) -> dict[tuple, dict]:
    """What the workflow's input functions need of each well, split once from the manifest: (plate, well) ->
    ``files`` (sorted raw paths, a file of several channels once), ``table`` (one row per channel of a file, by
    field and channel: [field, channel, path]; with ``with_planes`` and a ``plane`` column [field, channel, path,
    plane], by plane too; with a ``file_channel`` column (files of several channels, :func:`split_file_channels`)
    [field, channel, path, plane, file_channel], plane 1 without ``with_planes``) and ``metadata`` (the
    ``Metadata_*`` columns: plate, well, row, column).

    Plain lists and dicts: an input function runs once per job, and a pandas filter or sort per call made
    planning a 384-well plate take seconds (``bench/dag_scale.py``).

    Examples
    --------
    >>> df = pd.DataFrame({"plate": ["P"] * 2, "well": ["A01"] * 2, "row": ["A"] * 2, "column": [1, 1],
    ...                    "field": [1, 1], "channel": ["2", "1"], "path": ["b.tif", "a.tif"]})
    >>> rec = well_records(df)[("P", "A01")]
    >>> rec["files"], rec["table"]
    (['a.tif', 'b.tif'], [[1, '1', 'a.tif'], [1, '2', 'b.tif']])
    >>> rec["metadata"]
    {'Metadata_Plate': 'P', 'Metadata_Well': 'A01', 'Metadata_Row': 'A', 'Metadata_Column': 1}
    >>> df = df.assign(path="rgb.tif", file_channel=[2, 1])
    >>> well_records(df)[("P", "A01")]["table"]
    [[1, '1', 'rgb.tif', 1, 1], [1, '2', 'rgb.tif', 1, 2]]
    """
    planes = with_planes and "plane" in manifest
    split = "file_channel" in manifest
    order = ["plate", "well", "field", "channel"] + (["plane"] if "plane" in manifest and (planes or split) else [])
    records: dict[tuple, dict] = {}
    for r in manifest.sort_values(order, kind="stable").itertuples(index=False):
        key = (str(r.plate), str(r.well))
        if key not in records:
            records[key] = {
                "files": set(), "table": [],
                "metadata": {"Metadata_Plate": key[0], "Metadata_Well": key[1], "Metadata_Row": str(r.row),
                             "Metadata_Column": int(r.column)},
            }
        rec = records[key]
        rec["files"].add(str(r.path))
        row = [int(r.field), str(r.channel), str(r.path)]
        if split:
            row += [int(r.plane) if planes else 1, int(r.file_channel)]
        elif planes:
            row.append(int(r.plane))
        rec["table"].append(row)
    for rec in records.values():
        rec["files"] = sorted(rec["files"])
    return records


def select_plane(manifest: pd.DataFrame, z_projection, input_dir: str = "the input folder") -> pd.DataFrame:
    """The manifest's files of z-plane ``z_projection`` when it is a plane number (config ``input.z_projection``);
    unchanged for ``None``, ``"max"`` or ``"mean"`` (projected at ingest).

    Raises ValueError when the file names carry no plane, or when a field and channel lacks that plane (naming it).

    Examples
    --------
    >>> df = pd.DataFrame({"plate": ["P"] * 3, "well": ["A01"] * 3, "field": [1] * 3, "channel": ["1"] * 3,
    ...                    "plane": [1, 2, 3], "path": ["z1.tif", "z2.tif", "z3.tif"]})
    >>> select_plane(df, 2)["path"].tolist()
    ['z2.tif']
    >>> len(select_plane(df, "max"))
    3
    """
    if z_projection is None or isinstance(z_projection, str):
        return manifest
    plane = int(z_projection)
    if "plane" not in manifest:
        raise ValueError(f"config key input.z_projection: {plane} asks for z-plane {plane}, but the file names of "
                         f"{input_dir} carry no plane (input.scheme / input.pattern with a 'plane' group)")
    kept = manifest[manifest["plane"] == plane]
    positions = ["plate", "well", "field", "channel"]
    lacking = manifest[positions].drop_duplicates().merge(kept[positions].drop_duplicates(), how="left",
                                                          indicator=True)
    lacking = lacking[lacking["_merge"] == "left_only"]
    if len(lacking):
        first = lacking.iloc[0]
        raise ValueError(f"config key input.z_projection: {plane}: {len(lacking)} field/channel position(s) of "
                         f"{input_dir} have no plane {plane} (e.g. plate {first['plate']}, well {first['well']}, "
                         f"field {first['field']}, channel {first['channel']}; planes there: "
                         f"{sorted(manifest['plane'].unique().tolist())})")
    return kept.reset_index(drop=True)


def check_complete(manifest: pd.DataFrame) -> list[str]:
    """Find gaps in a manifest: channels, fields (planes, timepoints) some images lack.

    For every plate the expected channels are those any of its images has, and the
    expected image positions (field, plane, timepoint) those any of its wells has.
    Wells that were not imaged at all are not reported (partial plates are normal).

    Parameters
    ----------
    manifest : pandas.DataFrame
        As returned by :func:`build_manifest`.

    Returns
    -------
    list of str
        Human-readable problems; empty when the run is complete.

    Examples
    --------
    >>> df = pd.DataFrame({"plate": ["P"] * 3, "well": ["A01", "A01", "A02"],
    ...                    "field": [1, 1, 1], "channel": ["1", "2", "1"]})
    >>> check_complete(df)
    ['plate P, well A02, field 1: channel 2 missing (plate has channels 1, 2)']
    """
    if len(manifest) == 0:
        return []
    extra = [c for c in OPTIONAL_COLUMNS if c in manifest]
    cols = ["plate", "well", "field", *extra, "channel"]
    # plate -> well -> position -> channels
    tree: dict[str, dict[str, dict[tuple, set]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(set)))
    for rec in manifest[cols].itertuples(index=False, name=None):
        tree[rec[0]][rec[1]][rec[2:-1]].add(str(rec[-1]))

    def describe(pos: tuple) -> str:
        return ", ".join(f"{name} {value}" for name, value in zip(["field", *extra], pos))

    def listing(values: Iterable) -> str:
        return ", ".join(str(v) for v in sorted(values, key=lambda v: _natural_key(str(v))))

    problems: list[str] = []
    plate_channels = {p: set().union(*(c for w in wells.values() for c in w.values())) for p, wells in tree.items()}
    all_channels = set().union(*plate_channels.values())
    for p in sorted(tree, key=_natural_key):
        wells = tree[p]
        channels = plate_channels[p]
        if len(tree) > 1 and channels != all_channels:
            problems.append(
                f"plate {p}: channel(s) {listing(all_channels - channels)} missing (other plates have them)"
            )
        positions = set().union(*(w.keys() for w in wells.values()))
        for w in sorted(wells, key=_well_key):
            present = wells[w]
            lacking = sorted(positions - present.keys())
            if lacking:
                shown = "; ".join(describe(pos) for pos in lacking[:5])
                more = f" and {len(lacking) - 5} more" if len(lacking) > 5 else ""
                problems.append(
                    f"plate {p}, well {w}: no images for {shown}{more} "
                    f"({len(present)} of {len(positions)} positions imaged; other wells have them)"
                )
            for pos in sorted(present):
                gap = channels - present[pos]
                if gap:
                    problems.append(
                        f"plate {p}, well {w}, {describe(pos)}: channel {listing(gap)} missing "
                        f"(plate has channels {listing(channels)})"
                    )
    return problems
