"""What file names and well names mean: plate wells (``A01`` form, row letters) and the file-naming schemes of
the microscopes (:data:`SCHEMES`), parsed one name at a time.

The schemes themselves are described in :mod:`plateseg.io.manifest`, which builds a run's table from them.

Examples
--------
>>> normalize_well("a1")
('A01', 'A', 1)
>>> row_letter(27), row_index("AA")
('AA', 27)
>>> parse_name("DEMO_B12_s10_w2.tif", "cellprofiler")["field"]
10
"""
from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable

__all__ = ["MAX_COLUMNS", "MAX_ROWS", "SCHEMES", "ManifestError", "normalize_well", "parse_name", "row_index",
           "row_letter", "well_from_row_column", "channel_id", "name_parser", "EXPECTED_NAMES"]

SCHEMES: tuple[str, ...] = ("cellprofiler", "operetta", "cellvoyager", "regex", "samplesheet")

#: largest plate supported: 3456 wells (48 rows A..AV, 72 columns)
MAX_ROWS = 48
MAX_COLUMNS = 72

EXPECTED_NAMES = {
    "cellprofiler": "{plate}_{well}_s{site}_w{channel}.tif, e.g. DEMO_A01_s1_w1.tif",
    "operetta": "r{row}c{column}f{field}p{plane}-ch{channel}sk{timepoint}fk1fl1.tiff, "
    "e.g. r01c01f01p01-ch1sk1fk1fl1.tiff",
    "cellvoyager": "{plate}_{well}_T{timepoint}F{field}L{line}A{action}Z{plane}C{channel}.tif, "
    "e.g. DEMO_A01_T0001F001L01A01Z01C01.tif",
    "regex": "the regex in input.pattern",
    "samplesheet": "a CSV sample sheet (input.sample_sheet)",
}


class ManifestError(ValueError):
    """The imaging run cannot be turned into a manifest (message says why and which config key)."""


# --------------------------------------------------------------------------- wells
def row_letter(index: int) -> str:
    """1 -> "A", 26 -> "Z", 27 -> "AA", 32 -> "AF"."""
    if not 1 <= index <= MAX_ROWS:
        raise ManifestError(f"row {index} is out of range (1..{MAX_ROWS})")
    if index <= 26:
        return chr(64 + index)
    return "A" + chr(64 + index - 26)


@functools.lru_cache(maxsize=None)
def row_index(row: str) -> int:
    """"A" -> 1, "Z" -> 26, "AA" -> 27; the inverse of :func:`row_letter`."""
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
    if len(row) == 2 and (row[0] != "A" or row_index(row) > MAX_ROWS):
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


def well_from_row_column(row: str, column: str | int) -> tuple[str, str, int]:
    row = str(row).strip()
    if row.isdigit():
        row = row_letter(int(row))
    return normalize_well(f"{row}{int(column)}")


def channel_id(value) -> str:
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
            well, row, column = well_from_row_column(g["row"], g["column"])
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
            "channel": channel_id(channel) if channel not in (None, "") else "1",
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


def name_parser(scheme: str, pattern: str | None, plate: str | None) -> tuple[Callable[[str], dict | None], bool, bool]:
    """The parser of a naming scheme: return ``(parse, has_plane, has_timepoint)``; ``parse`` takes a relative path."""
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
    parse, _, _ = name_parser(scheme, pattern, plate)
    return parse(name.replace(os.sep, "/"))

