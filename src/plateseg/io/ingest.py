"""Ingest: a well's raw TIFF files -> one OME-Zarr well image store.

Raw files are only read, never modified. Every field gets one (c, y, x) array whose channel
order is the configured one; all channels of a field must have the same 2-D shape. A file holds one 2-D plane,
or several channels on one channel axis (:func:`channel_layout`: an OME-TIFF / ImageJ / tifffile ``C`` axis, or
the ``S`` samples of an RGB / RGBA file, interleaved or planar), each ingested as a channel of its own. Planes are
streamed block by block (squares of 4 tiles a side; tifffile's zarr view of a tiled or stripped TIFF,
:func:`open_channels`; the channels of one file are read together), so a whole-slide plane is never in memory;
pixel QC and z-projections are computed block by block too, per channel.
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

__all__ = ["read_plane", "open_plane", "open_channels", "tiff_layout", "channel_layout", "project_planes",
           "ingest_well"]

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


# tifffile's names of the axes of a TIFF series: the channel axes plateseg splits, and the others it refuses
CHANNEL_AXES = {"C": "channels", "S": "samples (e.g. RGB)"}
_OTHER_AXES = {"Z": "z-planes", "T": "time points", "Q": "planes along an axis of unknown meaning (no axis metadata)",
               "I": "pages along an axis of unknown meaning (no axis metadata)"}


def tiff_layout(path) -> tuple[str, tuple, np.dtype]:
    """``(axes, shape, dtype)`` of the full-resolution image of a TIFF file (its first series), from the header
    only (tifffile's axis letters: ``Y``, ``X``, ``C`` channels, ``S`` samples, ``Z``, ``T``, ...); a
    ValueError names an unreadable file.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> tifffile.imwrite(d / "rgb.tif", np.zeros((4, 5, 3), np.uint8), photometric="rgb")
    >>> tiff_layout(d / "rgb.tif")
    ('YXS', (4, 5, 3), dtype('uint8'))
    """
    try:
        with tifffile.TiffFile(path) as tf:
            series = tf.series[0]
            return series.axes, tuple(series.shape), series.dtype
    except Exception as err:  # a zero-byte or foreign file: tifffile raises several types
        raise ValueError(f"{path}: cannot read as TIFF ({type(err).__name__}: {err})") from err


def channel_layout(path, axes: str, shape) -> tuple[int | None, int]:
    """``(position of the channel axis in axes or None, number of channels)`` of a TIFF image of
    :func:`tiff_layout`: a single plane (``YX``) has one channel; one channel axis (``C``: OME-TIFF, ImageJ
    or tifffile channels; ``S``: samples, RGB / RGBA interleaved or planar) of size > 1 gives the channels.
    A ValueError names the file for what plateseg does not read: z-planes, time points or an axis of unknown
    meaning in one file, or both channels and samples.

    Examples
    --------
    >>> channel_layout("a.tif", "YXS", (4, 5, 3)), channel_layout("b.tif", "TZCYXS", (1, 1, 2, 4, 5, 1))
    ((2, 3), (2, 2))
    >>> channel_layout("c.tif", "YX", (4, 5))
    (None, 1)
    >>> channel_layout("z.tif", "ZYX", (7, 4, 5))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: z.tif: expected a single 2-D plane (y, x) or a file of channels (axes CYX or YXS), got 7 z-planes ...
    """
    if "Y" not in axes or "X" not in axes:
        raise ValueError(f"{path}: expected an image with y and x axes, got tifffile axes {axes}, shape {tuple(shape)}")
    big = {a: n for a, n in zip(axes, shape) if n > 1 and a not in "YX"}
    what = f"(tifffile axes {axes}, shape {tuple(shape)})"
    other = [f"{n} {_OTHER_AXES.get(a, f'planes along axis {a}')}" for a, n in big.items() if a not in CHANNEL_AXES]
    if other:
        raise ValueError(f"{path}: expected a single 2-D plane (y, x) or a file of channels (axes CYX or YXS), got "
                         f"{' and '.join(other)} in one file {what}: export one file per z-plane or time point "
                         "(input.z_projection projects the z-planes of several files), or write the channel axis "
                         "(OME-TIFF, ImageJ, or tifffile metadata={'axes': 'CYX'})")
    if len(big) > 1:
        raise ValueError(f"{path}: holds {big['C']} channels of {big['S']} samples each {what}; expected one channel "
                         "axis: channels (C, OME-TIFF / ImageJ) or samples (S, RGB)")
    if not big:
        return None, 1
    (a, n), = big.items()
    return axes.index(a), n


@contextmanager
def open_channels(path, channels=(0,)):
    """A lazy view of channels of a TIFF file (tiled or stripped, any size, a pyramid's full resolution): index
    it by ``(rows, columns)`` to read only those, as a ``(len(channels), rows, columns)`` array (tifffile's zarr
    store of the file). ``channels`` are 1-based positions on the file's channel axis (:func:`channel_layout`),
    or ``(0,)`` for the single plane of a one-channel file.

    Examples
    --------
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "rgb.tif"
    >>> tifffile.imwrite(p, np.arange(24, dtype=np.uint8).reshape(2, 4, 3), photometric="rgb", rowsperstrip=1)
    >>> with open_channels(p, (1, 3)) as view:
    ...     view.shape, view.n_channels, view[1:2, 0:2].tolist()
    ((2, 4), 3, [[[12, 15]], [[14, 17]]])
    """
    import zarr

    path = Path(path)
    try:
        tf = tifffile.TiffFile(path)
    except Exception as err:  # tifffile raises several types for broken files
        raise ValueError(f"{path}: cannot read as TIFF ({err})") from err
    try:
        series = tf.series[0]
        arr = zarr.open(series.aszarr(level=0), mode="r")
        yield _Channels(path, arr, series.axes, tuple(channels))
    finally:
        tf.close()


@contextmanager
def open_plane(path):
    """A lazy ``(y, x)`` view of the single plane of a TIFF file (tiled or stripped, any size): index it by
    rows (and columns) to read only those (:func:`open_channels` of a one-channel file).

    Examples
    --------
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "a.tif"
    >>> tifffile.imwrite(p, np.arange(12, dtype=np.uint16).reshape(3, 4), rowsperstrip=1)
    >>> with open_plane(p) as plane:
    ...     plane.shape, plane[1:2].tolist()
    ((3, 4), [[4, 5, 6, 7]])
    """
    with open_channels(path) as view:
        yield _Plane(view)


class _Channels:
    """Blocks ``(channels, rows, columns)`` of some channels of a zarr array with tifffile's ``axes``."""

    def __init__(self, path, arr, axes: str, channels: tuple):
        self._arr, self._axes = arr, axes
        self._caxis, self.n_channels = channel_layout(path, axes, arr.shape)
        if (channels == (0,)) != (self._caxis is None) or not all(1 <= c <= self.n_channels for c in channels
                                                                   if self._caxis is not None):
            wanted = "a single 2-D plane (y, x)" if channels == (0,) else f"channel(s) {list(channels)}"
            raise ValueError(f"{path}: expected {wanted}, got {self.n_channels} channel(s) (tifffile axes {axes}, "
                             f"shape {tuple(arr.shape)})")
        self._channels = [c - 1 for c in channels] if self._caxis is not None else [0]
        self.shape, self.dtype = (arr.shape[axes.index("Y")], arr.shape[axes.index("X")]), arr.dtype

    def __getitem__(self, index):
        ys, xs = index if isinstance(index, tuple) else (index, slice(None))
        lo, hi = min(self._channels), max(self._channels) + 1
        sel = tuple(ys if a == "Y" else xs if a == "X" else slice(lo, hi) if i == self._caxis else 0
                    for i, a in enumerate(self._axes))
        block = np.asarray(self._arr[sel])  # the kept axes in file order: y, x and the channel axis
        if self._caxis is None:
            return block[None]
        kept = [a for i, a in enumerate(self._axes) if a in "YX" or i == self._caxis]
        block = np.moveaxis(block, kept.index(self._axes[self._caxis]), 0)
        return block[[c - lo for c in self._channels]]


class _Plane:
    """Rows and columns of the one channel of a :class:`_Channels` view."""

    def __init__(self, view: _Channels):
        self._view, self.shape, self.dtype = view, view.shape, view.dtype

    def __getitem__(self, index):
        return self._view[index][0]


def _blocks(paths, method, size: int, channels=(0,)):
    """``((ys, xs), block)`` of ``channels`` (:func:`open_channels`) of ``paths`` (one file) or of their
    z-projection (several, channel by channel), in squares of ``size``: ``block`` is ``(len(channels), h, w)``;
    a ValueError names a file whose pixels are not finite or whose shape differs from the stack's."""
    with ExitStack() as stack:
        planes = [stack.enter_context(open_channels(p, channels)) for p in paths]
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
        One entry per file and channel with keys ``field``, ``channel`` (the channel id) and ``path``, ``plane``
        for z-stacks (one file per plane), and ``file_channel`` for a channel of a file of several channels:
        its 1-based position on the file's channel axis (:func:`channel_layout`; the manifest's
        ``file_channel``, :func:`plateseg.io.manifest.build_manifest`). Without it (or 0) the file must hold
        a single 2-D plane.
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
    Every file is streamed in squares of 4 tiles a side; the channels of one file (an OME-TIFF's channel
    axis, an RGB file's samples) are read together, one square at a time. Blank (constant) and saturated
    planes (:func:`plane_qc`) are kept, logged as warnings and recorded in the store's attribute ``plateseg_qc``
    (``{"empty": [[field, channel], ...], "saturated": [...]}``), which the per-well summary turns into
    ``Metadata_QC_EmptyFields`` / ``Metadata_QC_SaturatedFields``. Channels of a file that ``channels`` does
    not list are not ingested, with a warning.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> rgb = np.arange(60, dtype=np.uint8).reshape(4, 5, 3)
    >>> tifffile.imwrite(d / "he.tif", rgb, photometric="rgb")
    >>> files = [{"field": 1, "channel": str(k), "path": str(d / "he.tif"), "file_channel": k} for k in (1, 2, 3)]
    >>> ingest_well(files, {"1": "R", "2": "G", "3": "B"}, d / "image.zarr", tile_size=4, pixel_size=0.5)
    {1: (4, 5)}
    >>> from plateseg.io.ngff import open_field
    >>> bool((open_field(d / "image.zarr", 1)[...] == np.moveaxis(rgb, 2, 0)).all())
    True
    """
    entries: dict[int, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for f in files:
        entries[int(f["field"])][str(f["channel"])].append(
            (int(f.get("plane", 1)), str(f["path"]), int(f.get("file_channel") or 0)))
    # field -> channel -> (its files in plane order (one unless a z-stack is projected), position in the files)
    by_field = {field: {c: (tuple(path for _, path, _ in sorted(es)), max(k for *_, k in es))
                        for c, es in chans.items()} for field, chans in entries.items()}
    for field, chans in by_field.items():
        for c, (paths, _) in chans.items():
            if len(paths) > 1 and z_projection is None:
                raise ValueError(f"field {field}, channel {c} has {len(paths)} files ({', '.join(paths)}): set the "
                                 "config key input.z_projection (max, mean or a plane number)")
    ids = [str(c) for c in channels]
    for field, chans in sorted(by_field.items()):
        missing = [c for c in ids if c not in chans]
        if missing:
            raise ValueError(
                f"field {field} lacks channel(s) {missing} "
                f"(files: {sorted({p for ps, _ in chans.values() for p in ps})}); "
                f"config key channels.names lists {ids}"
            )
    shapes, dtypes, layouts = {}, {}, {}
    for field, chans in sorted(by_field.items()):
        # read the pixels lazily below; take shape, dtype and channels from the TIFF headers first
        for c in ids:
            paths, k = chans[c]
            for path in paths:
                if path not in layouts:
                    axes, raw_shape, dtypes[path] = tiff_layout(path)
                    layouts[path] = (axes, raw_shape, channel_layout(path, axes, raw_shape)[1])
                axes, raw_shape, n = layouts[path]
                if (n > 1) != (k > 0) or k > n:
                    got = f"{n} channels (tifffile axes {axes}, shape {raw_shape})"
                    raise ValueError(
                        f"{path}: expected a single 2-D plane (y, x) for channel {c}, got {got}; the channels of a "
                        "file are split only when its name carries no channel (input.scheme regex without a channel "
                        "group, or a sample-sheet row without one)" if k == 0 else
                        f"{path}: expected at least {k} channels (channel {c} is its channel {k}), got {got}")
                shape = (raw_shape[axes.index("Y")], raw_shape[axes.index("X")])
                if field in shapes and shapes[field] != shape:
                    raise ValueError(
                        f"{path}: shape {shape} differs from the other channels of field {field} {shapes[field]}"
                    )
                shapes[field] = shape
    dtype = _majority_dtype(dtypes)
    for path, (axes, raw_shape, n) in layouts.items():
        if n > 1:
            used = sorted({k for chans in by_field.values() for ps, k in chans.values() if path in ps and k})
            left = [k for k in range(1, n + 1) if k not in used]
            log.info("%s: %d channels (tifffile axes %s), ingested as its channels %s", path, n, axes, used)
            if left:
                log.warning("%s: its channel(s) %s are not in config key channels.names and are not ingested",
                            path, left)
    qc = {"empty": [], "saturated": []}  # [field, channel name] of flagged planes (plane_qc)
    with atomic_path(out) as tmp:
        root = create_well_image(tmp, shapes, list(channels.values()), dtype, tile_size, pixel_size, attrs)
        for i, (field, chans) in enumerate(sorted(by_field.items()), start=1):
            arr, t0 = root[f"{field}/0"], time.perf_counter()
            # the channels read together: those of the same files (the channels of a multi-channel file)
            sources: dict[tuple, list] = defaultdict(list)
            for ci, c in enumerate(ids):
                sources[chans[c][0]].append((ci, c, chans[c][1]))
            for paths, members in sources.items():
                stats = [[None, None, 0] for _ in members]  # min, max, pixels at the type's maximum per channel
                for (ys, xs), block in _blocks(paths, z_projection, 4 * tile_size, tuple(k for *_, k in members)):
                    for (ci, _, _), plane, st in zip(members, block, stats):
                        arr[ci, ys, xs] = plane
                        st[0] = plane.min() if st[0] is None else min(st[0], plane.min())
                        st[1] = plane.max() if st[1] is None else max(st[1], plane.max())
                        if plane.dtype.kind in "ui":
                            st[2] += int((plane == np.iinfo(plane.dtype).max).sum())
                for (_, c, _), (lo, hi, n_max) in zip(members, stats):
                    for flag in _qc_flags(lo, hi, n_max, int(np.prod(shapes[field])), np.dtype(dtypes[paths[0]])):
                        qc[flag].append([int(field), channels[c]])
                        log.warning("field %d, channel %s (%s) is %s: flagged in Metadata_QC_%sFields", field,
                                    channels[c], ", ".join(paths), flag, flag.capitalize())
            n_planes = max(len(chans[c][0]) for c in ids)
            log.info("field %d (%d/%d): %s x %d channels%s, %s", field, i, len(by_field), shapes[field], len(ids),
                     f", {z_projection} projection of {n_planes} planes" if n_planes > 1 else "",
                     rate_text(int(np.prod(shapes[field])), time.perf_counter() - t0))
        root.attrs["plateseg_qc"] = qc
        if z_projection is not None:
            root.attrs["plateseg_z_projection"] = {
                "method": z_projection,
                "planes": {f"{f}/{c}": len(by_field[f][c][0]) for f in sorted(by_field) for c in sorted(by_field[f])}}
    return shapes
