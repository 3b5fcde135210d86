"""Manifest of an imaging run: one row per image file.

The manifest is built when the Snakefile loads, so it only looks at file
*names* (never opens an image): a folder of TIFF files named by one of the
supported schemes, or a sample-sheet CSV, becomes a :class:`pandas.DataFrame`
with the columns

``plate, well, row, column, field, channel, path`` (+ ``plane``, ``timepoint``
when the scheme has them)

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

Examples
--------
>>> normalize_well("a1")
('A01', 'A', 1)
>>> parse_name("DEMO_B12_s10_w2.tif", "cellprofiler")["field"]
10
"""

from __future__ import annotations

import functools
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterable

import pandas as pd

__all__ = [
    "SCHEMES",
    "ManifestError",
    "build_manifest",
    "check_complete",
    "normalize_well",
    "parse_name",
]

SCHEMES: tuple[str, ...] = ("cellprofiler", "operetta", "cellvoyager", "regex", "samplesheet")

COLUMNS: tuple[str, ...] = ("plate", "well", "row", "column", "field", "channel", "path")
OPTIONAL_COLUMNS: tuple[str, ...] = ("plane", "timepoint")

#: largest plate supported: 3456 wells (48 rows A..AV, 72 columns)
MAX_ROWS = 48
MAX_COLUMNS = 72

_EXPECTED = {
    "cellprofiler": "{plate}_{well}_s{site}_w{channel}.tif, e.g. DEMO_A01_s1_w1.tif",
    "operetta": "r{row}c{column}f{field}p{plane}-ch{channel}sk{timepoint}fk1fl1.tiff, "
    "e.g. r01c01f01p01-ch1sk1fk1fl1.tiff",
    "cellvoyager": "{plate}_{well}_T{timepoint}F{field}L{line}A{action}Z{plane}C{channel}.tif, "
    "e.g. DEMO_A01_T0001F001L01A01Z01C01.tif",
    "regex": "the regex in input.pattern",
    "samplesheet": "a CSV sample sheet (input.sample_sheet)",
}

_REGEX_GROUPS = ("plate", "well", "row", "column", "field", "site", "channel", "plane", "timepoint")


class ManifestError(ValueError):
    """The imaging run cannot be turned into a manifest (message says why and which config key)."""


# --------------------------------------------------------------------------- wells


def _row_letter(index: int) -> str:
    """1 -> "A", 26 -> "Z", 27 -> "AA", 32 -> "AF"."""
    if not 1 <= index <= MAX_ROWS:
        raise ManifestError(f"row {index} is out of range (1..{MAX_ROWS})")
    if index <= 26:
        return chr(64 + index)
    return "A" + chr(64 + index - 26)


@functools.lru_cache(maxsize=None)
def _row_index(row: str) -> int:
    """"A" -> 1, "Z" -> 26, "AA" -> 27; the inverse of :func:`_row_letter`."""
    if len(row) == 1:
        return ord(row) - 64
    return 26 + ord(row[1]) - 64


_WELL_RE = re.compile(r"([A-Za-z]{1,2})(\d{1,3})")


@functools.lru_cache(maxsize=4096)
def _normalize_well(well: str) -> tuple[str, str, int]:
    m = _WELL_RE.fullmatch(well.strip())
    if m is None:
        raise ManifestError(f"invalid well {well!r}: expected a row letter (A..P, AA..AF) and a column, like A01")
    row, column = m.group(1).upper(), int(m.group(2))
    if len(row) == 2 and (row[0] != "A" or _row_index(row) > MAX_ROWS):
        raise ManifestError(f"invalid well {well!r}: row {row!r} is not a plate row (A..Z, then AA..AV)")
    if not 1 <= column <= MAX_COLUMNS:
        raise ManifestError(f"invalid well {well!r}: column {column} is out of range (1..{MAX_COLUMNS})")
    return f"{row}{column:02d}", row, column


def normalize_well(well: str) -> tuple[str, str, int]:
    """Normalise a well name to ``(well, row, column)``.

    Parameters
    ----------
    well : str
        Well as written in a file name or sample sheet: ``A1``, ``a01``, ``P24``,
        ``AF48`` (rows beyond Z of 1536-well plates are two letters).

    Returns
    -------
    well : str
        ``A01`` form (column zero-padded to two digits).
    row : str
        Row letter(s), upper case.
    column : int
        1-based column.

    Raises
    ------
    ManifestError
        When ``well`` is not a well name.

    Examples
    --------
    >>> normalize_well("a1")
    ('A01', 'A', 1)
    >>> normalize_well("AF48")
    ('AF48', 'AF', 48)
    """
    if not isinstance(well, str):
        raise ManifestError(f"invalid well {well!r}: expected a string like A01")
    return _normalize_well(well)


def _well_from_row_column(row: str, column: str | int) -> tuple[str, str, int]:
    row = str(row).strip()
    if row.isdigit():
        row = _row_letter(int(row))
    return normalize_well(f"{row}{int(column)}")


def _channel(value) -> str:
    """Digits lose leading zeros ("01" -> "1"); names are kept as written."""
    text = str(value).strip()
    return str(int(text)) if text.isdigit() else text


# --------------------------------------------------------------------------- parsers

_CELLPROFILER = r"(?P<plate>[\w-]+?)_(?P<well>[A-Za-z]{1,2}\d{1,3})(?:_s(?P<field>\d+))?_w(?P<channel>\d+)"
# tried in order: plain or MetaXpress GUID suffix (a GUID may start with a digit), then any suffix
_CELLPROFILER_RES = (
    re.compile(
        _CELLPROFILER + r"(?:[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12})?", re.IGNORECASE
    ),
    re.compile(_CELLPROFILER + r"[A-Za-z][A-Za-z0-9-]*", re.IGNORECASE),
)
_OPERETTA_RE = re.compile(
    r"r(?P<row>\d+)c(?P<column>\d+)f(?P<field>\d+)p(?P<plane>\d+)-ch(?P<channel>\d+)"
    r"sk(?P<timepoint>\d+)fk\d+fl\d+",
    re.IGNORECASE,
)
_CELLVOYAGER_RE = re.compile(
    r"(?P<plate>[\w-]+?)_(?P<well>[A-Za-z]{1,2}\d{1,3})_T(?P<timepoint>\d+)F(?P<field>\d+)"
    r"L\d+A\d+Z(?P<plane>\d+)C(?P<channel>\d+)",
    re.IGNORECASE,
)


def _stem(name: str) -> str:
    """File name without directory, extension and a trailing ``.ome``."""
    base = name.rsplit("/", 1)[-1]
    stem, _ = os.path.splitext(base)
    if stem.lower().endswith(".ome"):
        stem = stem[:-4]
    return stem


def _from_match(m: re.Match, plate: str | None, has_plane: bool, has_timepoint: bool) -> dict | None:
    g = m.groupdict()
    try:
        if g.get("well") is not None:
            well, row, column = normalize_well(g["well"])
        else:
            well, row, column = _well_from_row_column(g["row"], g["column"])
        field = g.get("field")
        if field is None:
            field = g.get("site")
        channel = g.get("channel")
        out = {
            "plate": g["plate"] if g.get("plate") else plate,
            "well": well,
            "row": row,
            "column": column,
            "field": int(field) if field is not None else 1,
            "channel": _channel(channel) if channel not in (None, "") else "1",
        }
        if has_plane:
            out["plane"] = int(g["plane"]) if g.get("plane") is not None else 1
        if has_timepoint:
            out["timepoint"] = int(g["timepoint"]) if g.get("timepoint") is not None else 1
    except (ManifestError, ValueError, TypeError):
        return None
    return out


@functools.lru_cache(maxsize=64)
def _compile_user_regex(pattern: str) -> re.Pattern:
    if not pattern:
        raise ManifestError(
            "input.scheme 'regex' needs a regular expression with named groups in config key `input.pattern`"
        )
    try:
        compiled = re.compile(pattern)
    except re.error as err:
        raise ManifestError(f"config key `input.pattern`: {pattern!r} is not a valid regular expression: {err}") from err
    groups = set(compiled.groupindex)
    if "well" not in groups and not {"row", "column"} <= groups:
        has = ", ".join(sorted(groups)) or "no named groups"
        raise ManifestError(
            f"config key `input.pattern`: {pattern!r} has {has}; it needs a named group `well` "
            f"(like (?P<well>[A-P]\\d+)) or both `row` and `column`. Optional groups: "
            "plate, field (or site), channel, plane, timepoint"
        )
    return compiled


def _make_parser(scheme: str, pattern: str | None, plate: str | None) -> tuple[Callable[[str], dict | None], bool, bool]:
    """Return ``(parse, has_plane, has_timepoint)``; ``parse`` takes a relative path."""
    if scheme == "cellprofiler":
        plain, suffixed = _CELLPROFILER_RES

        def parse(name: str) -> dict | None:
            stem = _stem(name)
            m = plain.fullmatch(stem) or suffixed.fullmatch(stem)
            return None if m is None else _from_match(m, plate, False, False)

        return parse, False, False
    if scheme in ("operetta", "cellvoyager"):
        rx = _OPERETTA_RE if scheme == "operetta" else _CELLVOYAGER_RE

        def parse(name: str) -> dict | None:
            m = rx.fullmatch(_stem(name))
            return None if m is None else _from_match(m, plate, True, True)

        return parse, True, True
    if scheme == "regex":
        rx = _compile_user_regex(pattern)
        groups = rx.groupindex
        has_plane, has_timepoint = "plane" in groups, "timepoint" in groups
        on_path = "/" in (pattern or "")

        def parse(name: str) -> dict | None:
            target = name if on_path else name.rsplit("/", 1)[-1]
            m = rx.fullmatch(target)
            if m is None:
                m = rx.fullmatch(os.path.splitext(target)[0])
            return None if m is None else _from_match(m, plate, has_plane, has_timepoint)

        return parse, has_plane, has_timepoint
    if scheme == "samplesheet":
        raise ManifestError("input.scheme 'samplesheet' reads a CSV (input.sample_sheet), not file names")
    raise ManifestError(f"unknown input.scheme {scheme!r}; valid schemes: {', '.join(SCHEMES)}")


def parse_name(name: str, scheme: str, pattern: str | None = None, plate: str | None = None) -> dict | None:
    """Parse one image file name.

    Parameters
    ----------
    name : str
        File name (or path relative to the input folder, ``/``-separated).
    scheme : str
        One of :data:`SCHEMES` except ``"samplesheet"``.
    pattern : str, optional
        Regex with named groups, for ``scheme="regex"``.
    plate : str, optional
        Plate name for schemes whose names do not carry one.

    Returns
    -------
    dict or None
        ``plate, well, row, column, field, channel`` (+ ``plane, timepoint`` when the
        scheme has them), or None when the name does not follow the scheme.

    Raises
    ------
    ManifestError
        Unknown scheme, or a regex without the required groups.

    Examples
    --------
    >>> parse_name("r02c03f10p01-ch2sk1fk1fl1.tiff", "operetta", plate="P1")["well"]
    'B03'
    >>> parse_name("notes.tif", "cellprofiler") is None
    True
    """
    parse, _, _ = _make_parser(scheme, pattern, plate)
    return parse(name.replace(os.sep, "/"))


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
    columns = list(COLUMNS) + [c for c in OPTIONAL_COLUMNS if c in records]
    df = pd.DataFrame({c: records[c] for c in columns})
    for c in ("plate", "well", "row", "channel", "path"):
        df[c] = df[c].astype(str)
    for c in ("column", "field", *[c for c in OPTIONAL_COLUMNS if c in df]):
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
    df["_row"] = df["row"].map(_row_index)
    df["_channel"] = _rank(df["channel"])
    df = df.sort_values(sort_cols, kind="stable").drop(columns=["_plate", "_row", "_channel"])
    return df.reset_index(drop=True)


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
                well, row, column = _well_from_row_column(rec["row"], rec["column"])
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
        records["plate"].append(plate_name)
        records["well"].append(well)
        records["row"].append(row)
        records["column"].append(column)
        records["field"].append(field)
        records["channel"].append(_channel(channel) if channel else "1")
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
    return _finish(records, f"sample sheet {sheet!r}")


# --------------------------------------------------------------------------- public


def build_manifest(
    input_dir,
    scheme: str,
    pattern: str | None = None,
    sample_sheet=None,
    plate: str | None = None,
    extensions: Iterable[str] = (".tif", ".tiff"),
) -> tuple[pd.DataFrame, list[str]]:
    """Build the manifest of an imaging run from file names (no image is read).

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
        ``timepoint`` when the scheme has them), sorted by plate, row, column,
        field, channel (numbers sort numerically: s9 before s10, row Z before AA).
    unmatched : list of str
        Image files (relative to ``input_dir``) whose names do not follow the scheme.

    Raises
    ------
    ManifestError
        Unknown scheme, missing folder, no file matching the scheme, duplicate
        images, or an invalid regex / sample sheet.

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
    parse, has_plane, has_timepoint = _make_parser(scheme, pattern, plate)

    files = _scan(base, exts)
    if not files:
        raise ManifestError(
            f"input folder {base!r} (config key `input.dir`) holds no image files ({'/'.join(exts)}); "
            f"expected names like {_EXPECTED[scheme]} (config key `input.scheme`)"
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
        expected = _EXPECTED[scheme] if scheme != "regex" else f"the regex {pattern!r} (config key `input.pattern`)"
        raise ManifestError(
            f"no image file in {base!r} (config key `input.dir`) matches input.scheme {scheme!r}: "
            f"expected names like {expected}; found {len(files)} file(s) such as {_examples(unmatched)}"
        )
    return _finish(records, f"input folder {base!r} (config key `input.dir`)"), unmatched


def _well_key(well) -> tuple:
    try:
        _, row, column = normalize_well(str(well))
    except ManifestError:
        return (0, 0, str(well))
    return (_row_index(row), column, "")


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
