"""Ingest: a well's raw TIFF files -> one OME-Zarr well image store.

Raw files are only read, never modified. Every field gets one (c, y, x) array whose channel
order is the configured one; all channels of a field must have the same 2-D shape. Planes are streamed
block by block (squares of 4 tiles a side; tifffile's zarr view of a tiled or stripped TIFF, :func:`open_plane`),
so a whole-slide plane is never in memory; pixel QC and z-projections are computed block by block too.
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
import tifffile

from plateseg.io.files import atomic_path, rate_text
from plateseg.io.ngff import create_well_image

__all__ = ["read_plane", "open_plane", "project_planes", "ingest_well"]

Z_PROJECTIONS = ("max", "mean")

log = logging.getLogger(__name__)


def read_plane(path) -> np.ndarray:
    """Read a single-plane 2-D image from a TIFF file; clear error for anything else."""
    path = Path(path)
    try:
        img = tifffile.imread(path)
    except Exception as err:  # tifffile raises several types for broken files
        raise ValueError(f"{path}: cannot read as TIFF ({err})") from err
    img = np.squeeze(img)
    if img.ndim != 2:
        raise ValueError(
            f"{path}: expected a single 2-D plane (y, x), got an array of shape {img.shape}; "
            "z-stacks, time series and RGB files must be split into one file per plane and channel"
        )
    if img.dtype.kind == "f" and not np.isfinite(img).all():
        bad = int(np.size(img) - np.isfinite(img).sum())
        raise ValueError(f"{path}: {bad} pixel(s) are NaN or infinite; plateseg needs finite intensities "
                         "(fix or replace them in the raw file's export)")
    return img


@contextmanager
def open_plane(path):
    """A lazy ``(y, x)`` view of the single plane of a TIFF file (tiled or stripped, any size): index it by
    rows (and columns) to read only those (tifffile's zarr store of the file; singleton axes dropped).

    Examples
    --------
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "a.tif"
    >>> tifffile.imwrite(p, np.arange(12, dtype=np.uint16).reshape(1, 3, 4), rowsperstrip=1)
    >>> with open_plane(p) as plane:
    ...     plane.shape, plane[1:2].tolist()
    ((3, 4), [[4, 5, 6, 7]])
    """
    import zarr

    path = Path(path)
    try:
        store = tifffile.imread(path, aszarr=True)
    except Exception as err:  # tifffile raises several types for broken files
        raise ValueError(f"{path}: cannot read as TIFF ({err})") from err
    try:
        arr = zarr.open(store, mode="r")
        if isinstance(arr, zarr.Group):  # a pyramid (multiscale OME-TIFF): the full resolution
            arr = arr["0"]
        if sum(n != 1 for n in arr.shape) != 2 or arr.ndim < 2 or 1 in arr.shape[-2:]:
            raise ValueError(
                f"{path}: expected a single 2-D plane (y, x), got an array of shape {tuple(arr.shape)}; "
                "z-stacks, time series and RGB files must be split into one file per plane and channel")
        yield _Plane(arr)
    finally:
        store.close()


class _Plane:
    """Rows and columns of the last two axes of a zarr array whose other axes are singletons."""

    def __init__(self, arr):
        self._arr, self._lead = arr, (0,) * (arr.ndim - 2)
        self.shape, self.dtype = tuple(arr.shape[-2:]), arr.dtype

    def __getitem__(self, index):
        return np.asarray(self._arr[self._lead + (index if isinstance(index, tuple) else (index,))])


def _blocks(paths, method, size: int):
    """``((ys, xs), block)`` of the plane of ``paths`` (one file) or of their z-projection (several), in squares
    of ``size``; a ValueError names a file whose pixels are not finite or whose shape differs from the stack's."""
    with ExitStack() as stack:
        planes = [stack.enter_context(open_plane(p)) for p in paths]
        for path, plane in zip(paths[1:], planes[1:]):
            if plane.shape != planes[0].shape:
                raise ValueError(f"{path}: shape {plane.shape} differs from the other planes of its stack "
                                 f"{planes[0].shape}")
        if len(paths) > 1 and method not in Z_PROJECTIONS:
            raise ValueError(f"config key input.z_projection: unknown projection {method!r} (max, mean or a plane number)")
        bad = dict.fromkeys(map(str, paths), 0)
        h, w = planes[0].shape
        for index in ((slice(y, min(y + size, h)), slice(x, min(x + size, w)))
                      for y in range(0, h, size) for x in range(0, w, size)):
            parts = [plane[index] for plane in planes]
            for path, part in zip(paths, parts):
                if part.dtype.kind == "f":
                    bad[str(path)] += int(part.size - np.isfinite(part).sum())
            if len(parts) == 1:
                yield index, parts[0]
            elif method == "max":
                yield index, np.max(parts, axis=0)
            else:
                mean = np.mean(np.asarray(parts, np.float64), axis=0)
                yield index, np.round(mean).astype(parts[0].dtype) if parts[0].dtype.kind in "ui" else mean.astype(parts[0].dtype)
        for path, n in bad.items():
            if n:
                raise ValueError(f"{path}: {n} pixel(s) are NaN or infinite; plateseg needs finite intensities "
                                 "(fix or replace them in the raw file's export)")


def project_planes(paths, method: str) -> np.ndarray:
    """The z-projection (``"max"`` or ``"mean"``) of the planes in ``paths``, read one at a time, in their dtype
    (an integer mean is rounded).

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> for z, v in ((1, 10), (2, 30)): tifffile.imwrite(d / f"z{z}.tif", np.full((2, 2), v, np.uint16))
    >>> stack = [d / "z1.tif", d / "z2.tif"]
    >>> int(project_planes(stack, "max")[0, 0]), int(project_planes(stack, "mean")[0, 0])
    (30, 20)
    """
    if method not in Z_PROJECTIONS:
        raise ValueError(f"config key input.z_projection: unknown projection {method!r} (max, mean or a plane number)")
    out, dtype = None, None
    for path in paths:
        plane = read_plane(path)
        if out is None:
            dtype = plane.dtype
            out = plane.astype(np.float64) if method == "mean" else plane.copy()
        elif plane.shape != out.shape:
            raise ValueError(f"{path}: shape {plane.shape} differs from the other planes of its stack {out.shape}")
        elif method == "max":
            np.maximum(out, plane, out=out)
        else:
            out += plane
    if method == "mean":
        out /= len(paths)
        out = np.round(out).astype(dtype) if dtype.kind in "ui" else out.astype(dtype)
    return out


def _header(path) -> tuple:
    """(shape without singleton axes, dtype) of the first page of a TIFF file, naming the file on any error."""
    try:
        with tifffile.TiffFile(path) as tf:
            page = tf.pages[0]
            return tuple(s for s in page.shape if s != 1), page.dtype, page.shape
    except Exception as err:  # a zero-byte or foreign file: tifffile raises several types
        raise ValueError(f"{path}: cannot read as TIFF ({type(err).__name__}: {err})") from err


# a plane with at least this share of its pixels at the largest value of its integer type is saturated
SATURATED_SHARE = 0.05


def plane_qc(plane: np.ndarray) -> list[str]:
    """Pixel QC of one raw plane: ``"empty"`` when every pixel has the same value (a blank or failed
    acquisition), ``"saturated"`` when at least :data:`SATURATED_SHARE` of the pixels sit at the largest value
    of an integer type.

    Examples
    --------
    >>> plane_qc(np.zeros((4, 4), np.uint16))
    ['empty']
    >>> plane_qc(np.array([[0, 65535], [1, 2]], np.uint16))
    ['saturated']
    >>> plane_qc(np.arange(16, dtype=np.uint16).reshape(4, 4))
    []
    """
    n_at_max = int((plane == np.iinfo(plane.dtype).max).sum()) if plane.dtype.kind in "ui" else 0
    return _qc_flags(plane.min() if plane.size else None, plane.max() if plane.size else None, n_at_max, plane.size,
                     plane.dtype)


def _qc_flags(lo, hi, n_at_max: int, size: int, dtype) -> list[str]:
    """:func:`plane_qc` from a plane's streamed statistics (minimum, maximum, pixels at the type's maximum)."""
    if size and lo == hi:
        return ["empty"]
    if dtype.kind in "ui" and n_at_max >= SATURATED_SHARE * size:
        return ["saturated"]
    return []


def _majority_dtype(dtypes: dict):
    """The dtype of most files of a well; a ValueError naming the files whose dtype differs from it.

    Examples
    --------
    >>> _majority_dtype({"a.tif": np.dtype("uint16"), "b.tif": np.dtype("uint16"), "c.tif": np.dtype("int32")})
    Traceback (most recent call last):
    ...
    ValueError: c.tif: dtype int32 differs from the other 2 file(s) of the well (uint16, e.g. a.tif)
    """
    counts: dict = defaultdict(list)
    for path, dt in dtypes.items():
        counts[dt].append(path)
    if len(counts) == 1:
        return next(iter(counts))
    major = max(counts, key=lambda d: len(counts[d]))
    if sum(len(ps) == len(counts[major]) for ps in counts.values()) > 1:  # no majority: name every file
        listing = "; ".join(f"{d}: {', '.join(map(str, ps))}" for d, ps in counts.items())
        raise ValueError(f"the files of the well have different dtypes ({listing})")
    odd = sorted(p for d, ps in counts.items() if d != major for p in ps)
    odd_types = ", ".join(sorted({str(dtypes[p]) for p in odd}))
    raise ValueError(f"{', '.join(map(str, odd))}: dtype {odd_types} differs from the other {len(counts[major])} "
                     f"file(s) of the well ({major}, e.g. {counts[major][0]})")


def ingest_well(files, channels: dict, out, tile_size: int, pixel_size: float, attrs: dict | None = None,
                z_projection: str | None = None) -> dict:
    """Convert one well's TIFF files into a well image store at ``out``.

    Parameters
    ----------
    files : list of dict
        One entry per file with keys ``field``, ``channel`` (the channel id of the file name) and ``path``,
        and ``plane`` for z-stacks (one file per plane).
    channels : dict
        Channel id -> channel name, in the order of the ``c`` axis. Every field must have every channel.
    out : path-like
        The ``image.zarr`` folder to write (atomically).
    tile_size, pixel_size : chunk edge in pixels and micrometres per pixel.
    z_projection : {"max", "mean"}, optional
        How the planes of a field and channel with several files are projected (:func:`project_planes`;
        config ``input.z_projection``). Without it several files at one position are an error.

    Returns
    -------
    dict
        field -> (height, width) of the written fields.

    Notes
    -----
    Blank (constant) and saturated planes (:func:`plane_qc`) are kept, logged as warnings and recorded in
    the store's attribute ``plateseg_qc`` (``{"empty": [[field, channel], ...], "saturated": [...]}``), which
    the per-well summary turns into ``Metadata_QC_EmptyFields`` / ``Metadata_QC_SaturatedFields``.
    """
    entries: dict[int, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for f in files:
        entries[int(f["field"])][str(f["channel"])].append((int(f.get("plane", 1)), str(f["path"])))
    # field -> channel -> its files in plane order (one unless a z-stack is projected)
    by_field = {field: {c: [path for _, path in sorted(es)] for c, es in chans.items()}
                for field, chans in entries.items()}
    for field, chans in by_field.items():
        for c, paths in chans.items():
            if len(paths) > 1 and z_projection is None:
                raise ValueError(f"field {field}, channel {c} has {len(paths)} files ({', '.join(paths)}): set the "
                                 "config key input.z_projection (max, mean or a plane number)")
    ids = [str(c) for c in channels]
    for field, chans in sorted(by_field.items()):
        missing = [c for c in ids if c not in chans]
        if missing:
            raise ValueError(
                f"field {field} lacks channel(s) {missing} (files: {sorted(p for ps in chans.values() for p in ps)}); "
                f"config key channels.names lists {ids}"
            )
    shapes, dtypes = {}, {}
    for field, chans in sorted(by_field.items()):
        # read one plane per channel lazily below; take shape/dtype from the TIFF headers first
        for c in ids:
            for path in chans[c]:
                shape, dtypes[path], raw_shape = _header(path)
                if len(shape) != 2:
                    raise ValueError(f"{path}: expected a 2-D plane, got shape {raw_shape}")
                if field in shapes and shapes[field] != shape:
                    raise ValueError(
                        f"{path}: shape {shape} differs from the other channels of field {field} {shapes[field]}"
                    )
                shapes[field] = shape
    dtype = _majority_dtype(dtypes)
    qc = {"empty": [], "saturated": []}  # [field, channel name] of flagged planes (plane_qc)
    with atomic_path(out) as tmp:
        root = create_well_image(tmp, shapes, list(channels.values()), dtype, tile_size, pixel_size, attrs)
        for i, (field, chans) in enumerate(sorted(by_field.items()), start=1):
            arr, t0 = root[f"{field}/0"], time.perf_counter()
            for ci, c in enumerate(ids):
                lo, hi, n_max, dt = None, None, 0, None
                for (ys, xs), strip in _blocks(chans[c], z_projection, 4 * tile_size):
                    arr[ci, ys, xs] = strip
                    dt = strip.dtype
                    lo = strip.min() if lo is None else min(lo, strip.min())
                    hi = strip.max() if hi is None else max(hi, strip.max())
                    if dt.kind in "ui":
                        n_max += int((strip == np.iinfo(dt).max).sum())
                for flag in _qc_flags(lo, hi, n_max, int(np.prod(shapes[field])), dt):
                    qc[flag].append([int(field), channels[c]])
                    log.warning("field %d, channel %s (%s) is %s: flagged in Metadata_QC_%sFields", field,
                                channels[c], ", ".join(chans[c]), flag, flag.capitalize())
            n_planes = max(len(chans[c]) for c in ids)
            log.info("field %d (%d/%d): %s x %d channels%s, %s", field, i, len(by_field), shapes[field], len(ids),
                     f", {z_projection} projection of {n_planes} planes" if n_planes > 1 else "",
                     rate_text(int(np.prod(shapes[field])), time.perf_counter() - t0))
        root.attrs["plateseg_qc"] = qc
        if z_projection is not None:
            root.attrs["plateseg_z_projection"] = {
                "method": z_projection,
                "planes": {f"{f}/{c}": len(by_field[f][c]) for f in sorted(by_field) for c in sorted(by_field[f])}}
    return shapes
