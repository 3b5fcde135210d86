"""The tile grid shared by every engine, smooth blending of tiled predictions, tile ownership.

A field of shape ``(h, w)`` is cut into a regular grid of ``tile_size`` squares (so a tile is one
zarr chunk). Each tile is read with a ``halo`` of context around its *core*, clipped to the field;
tiles at the field edge are padded (reflect) to the uniform size ``tile_size + 2 * halo`` so that
they can be batched. Per-pixel maps predicted on overlapping tiles are blended with a smooth window
(1 in the core, a raised-cosine taper over the halo) and normalised by the sum of weights.

Objects belong to exactly one tile: the one whose core holds their centroid (StarDist's
"responsible block"); see :func:`owned_by_tile` and :func:`owner_mask`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = [
    "Tile",
    "tile_grid",
    "blend_window",
    "predict_tiled",
    "owned_by_tile",
    "owner_mask",
    "cut_by_halo",
]


@dataclass(frozen=True)
class Tile:
    """One tile of a field.

    Attributes
    ----------
    index : tuple of int
        ``(row, col)`` of the tile in the grid.
    number : int
        Row-major position in :func:`tile_grid`'s list (the order tiles are processed and
        written in; a resumed job starts at the first unwritten ``number``).
    core : tuple of slice
        ``(y, x)`` slices of the core in field coordinates (the tiles' cores partition the field).
    read : tuple of slice
        ``(y, x)`` slices of core plus halo, clipped to the field, in field coordinates.
    core_in_read : tuple of slice
        The core relative to the read window.
    pad : tuple of tuple of int
        ``((top, bottom), (left, right))`` padding that brings the read window to the uniform
        window ``tile_size + 2 * halo`` whose top-left corner is ``core.start - halo``.
    """

    index: tuple[int, int]
    number: int
    core: tuple[slice, slice]
    read: tuple[slice, slice]
    core_in_read: tuple[slice, slice]
    pad: tuple[tuple[int, int], tuple[int, int]]


def _pair(v, name: str) -> tuple[int, int]:
    if np.isscalar(v):
        v = (v, v)
    v = tuple(int(a) for a in v)
    if len(v) != 2:
        raise ValueError(f"{name} must be an int or a pair, got {v}")
    return v


def tile_grid(shape, tile_size, halo) -> list[Tile]:
    """Cut a field into tiles aligned to a grid of ``tile_size``.

    Parameters
    ----------
    shape : tuple of int
        Field shape; the last two entries are ``(h, w)``.
    tile_size : int or (int, int)
        Core size (the zarr chunk size). The last row/column of tiles may be smaller.
    halo : int or (int, int)
        Context read on every side of the core (>= the largest expected object diameter).

    Returns
    -------
    list of Tile
        Row-major.

    Examples
    --------
    >>> tiles = tile_grid((100, 120), 64, 16)
    >>> len(tiles), tiles[1].core, tiles[1].read
    (4, (slice(0, 64, None), slice(64, 120, None)), (slice(0, 80, None), slice(48, 120, None)))
    >>> tiles[1].pad
    ((16, 0), (0, 24))
    """
    h, w = (int(s) for s in shape[-2:])
    ts = _pair(tile_size, "tile_size")
    hl = _pair(halo, "halo")
    if min(ts) < 1 or min(hl) < 0:
        raise ValueError("tile_size must be >= 1 and halo >= 0")
    tiles = []
    ny, nx = -(-h // ts[0]), -(-w // ts[1])
    for r in range(ny):
        for c in range(nx):
            core, read, rel, pad = [], [], [], []
            for start, size, t, hh in ((r * ts[0], h, ts[0], hl[0]), (c * ts[1], w, ts[1], hl[1])):
                stop = min(start + t, size)
                r0, r1 = max(start - hh, 0), min(stop + hh, size)
                core.append(slice(start, stop))
                read.append(slice(r0, r1))
                rel.append(slice(start - r0, stop - r0))
                pad.append((r0 - (start - hh), (start + t + hh) - r1))
            tiles.append(Tile((r, c), len(tiles), tuple(core), tuple(read), tuple(rel), tuple(pad)))
    return tiles


def _taper(n: int, halo: int, trim: int = 0) -> np.ndarray:
    w = np.ones(n, np.float64)
    if halo > 0:
        d = np.arange(halo, 0, -1)  # distance from the core: halo .. 1
        length = halo - trim
        ramp = np.where(d <= length, 0.5 * (1.0 + np.cos(np.pi * d / (length + 1))), 0.0)
        w[:halo] = ramp
        w[n - halo:] = ramp[::-1]
    return w


def blend_window(shape, halo, trim=0) -> np.ndarray:
    """Blending weights for a uniform tile window of ``shape`` with ``halo`` on every side.

    The weight is 1 in the core and falls off over the halo as a raised cosine,
    ``0.5 * (1 + cos(pi * d / (L + 1)))`` at distance ``d = 1 .. L`` from the core, with
    ``L = halo - trim``; the outer ``trim`` pixels of the halo get weight 0 (they are predicted
    with the least context; a function that looks ``r`` pixels around is exact with
    ``trim >= r``). Every pixel is in some tile's core, where the weight is 1, so the
    sum-normalised blend is always defined. 2-D weights are the outer product of the 1-D
    profiles; ``trim = halo`` gives hard stitching of cores.

    Parameters
    ----------
    shape : tuple of int
        ``(H, W)`` of the window, ``tile_size + 2 * halo``.
    halo : int or (int, int)
    trim : int or (int, int)
        ``0 <= trim <= halo``.

    Returns
    -------
    numpy.ndarray
        float32 ``(H, W)``.

    Examples
    --------
    >>> w = blend_window((8, 8), 2)
    >>> float(w[2:6, 2:6].min()), bool(w.min() > 0), bool(w[0, 0] < w[1, 1] < 1)
    (1.0, True, True)
    """
    hy, hx = _pair(halo, "halo")
    ty, tx = _pair(trim, "trim")
    H, W = (int(s) for s in shape[-2:])
    if 2 * hy > H or 2 * hx > W:
        raise ValueError(f"window {shape} too small for halo {halo}")
    if not (0 <= ty <= hy and 0 <= tx <= hx):
        raise ValueError(f"need 0 <= trim <= halo, got trim {trim}, halo {halo}")
    return np.outer(_taper(H, hy, ty), _taper(W, hx, tx)).astype(np.float32)


def _reach(tile: int, halo: int) -> int:
    """How many tiles away a tile's read window can reach."""
    return -(-halo // tile) if halo > 0 else 0


def predict_tiled(predict_fn: Callable[[np.ndarray], np.ndarray],
                  read_fn: Callable[[tuple[slice, slice]], np.ndarray],
                  shape, tile_size, halo, batch_size: int = 1, out=None, *,
                  start: int = 0, on_tile_written: Callable[[Tile], None] | None = None,
                  pad_mode: str = "reflect", trim=0):
    """Predict per-pixel maps tile by tile and blend them into a full-field map.

    Tiles are processed in row-major order, ``batch_size`` at a time. The blended values of a
    tile's core are written to ``out`` exactly once, as soon as every tile overlapping that core
    has been predicted, and cores are written in tile order; so ``out`` may be a chunked on-disk
    array (zarr) written chunk by chunk, and a killed run can be resumed with ``start`` = the
    first unwritten tile (the few tiles before it that overlap it are predicted again, not
    written). Memory holds the pending cores of about one row of tiles, never the whole field.

    Parameters
    ----------
    predict_fn : callable
        ``predict_fn(batch)`` with ``batch`` float array ``(n, c, H, W)``, ``H, W = tile_size +
        2 * halo``, returns array-like ``(n, c_out, H, W)``.
    read_fn : callable
        ``read_fn((ys, xs))`` returns the field's pixels in the given slices as ``(c, h, w)``.
    shape : tuple of int
        Field shape ``(h, w)`` (or ``(c, h, w)``; the last two entries are used).
    tile_size, halo : int or (int, int)
        See :func:`tile_grid`.
    batch_size : int
        Tiles per ``predict_fn`` call.
    out : array-like, optional
        ``(c_out, h, w)`` target supporting ``out[:, ys, xs] = values`` (numpy, zarr, ...).
        If None, a float32 numpy array is allocated.
    start : int
        First tile whose core is written (resume).
    on_tile_written : callable, optional
        Called with each :class:`Tile` after its core has been written (progress, checkpoints).
    pad_mode : str
        ``numpy.pad`` mode for tiles at the field edge ("reflect"; "symmetric"; "constant").
    trim : int or (int, int)
        Outer halo pixels given weight 0 in the blend (see :func:`blend_window`).

    Returns
    -------
    array-like
        ``out``.

    Examples
    --------
    A purely local function gives the same result tiled or not:

    >>> img = np.random.default_rng(0).random((1, 50, 70)).astype(np.float32)
    >>> double = lambda b: 2 * b
    >>> res = predict_tiled(double, lambda s: img[(slice(None),) + s], img.shape, 16, 4, 3)
    >>> bool(np.allclose(res, 2 * img))
    True
    """
    h, w = (int(s) for s in shape[-2:])
    ts = _pair(tile_size, "tile_size")
    hl = _pair(halo, "halo")
    tiles = tile_grid((h, w), ts, hl)
    ny, nx = -(-h // ts[0]), -(-w // ts[1])
    ry, rx = _reach(ts[0], hl[0]), _reach(ts[1], hl[1])
    window = blend_window((ts[0] + 2 * hl[0], ts[1] + 2 * hl[1]), hl, trim).astype(np.float64)

    def neighbours(t: Tile):
        r, c = t.index
        for rr in range(max(r - ry, 0), min(r + ry, ny - 1) + 1):
            for cc in range(max(c - rx, 0), min(c + rx, nx - 1) + 1):
                yield rr * nx + cc

    # a core is final once every tile whose read window overlaps it has been predicted
    final_after = [max(neighbours(t)) for t in tiles]
    needed = sorted({j for t in tiles[start:] for j in neighbours(t)})

    acc: dict[int, np.ndarray] = {}
    wsum: dict[int, np.ndarray] = {}
    next_write = start

    def accumulate(j: int, pred: np.ndarray):
        tj = tiles[j]
        oy, ox = tj.core[0].start - hl[0], tj.core[1].start - hl[1]  # window origin (field)
        for k in neighbours(tj):
            if k < start:
                continue
            tk = tiles[k]
            ys = slice(max(tk.core[0].start, tj.read[0].start), min(tk.core[0].stop, tj.read[0].stop))
            xs = slice(max(tk.core[1].start, tj.read[1].start), min(tk.core[1].stop, tj.read[1].stop))
            if ys.start >= ys.stop or xs.start >= xs.stop:
                continue
            wy = slice(ys.start - oy, ys.stop - oy)
            wx = slice(xs.start - ox, xs.stop - ox)
            ky = slice(ys.start - tk.core[0].start, ys.stop - tk.core[0].start)
            kx = slice(xs.start - tk.core[1].start, xs.stop - tk.core[1].start)
            if k not in acc:
                ch, cw = tk.core[0].stop - tk.core[0].start, tk.core[1].stop - tk.core[1].start
                acc[k] = np.zeros((pred.shape[0], ch, cw), np.float64)
                wsum[k] = np.zeros((ch, cw), np.float64)
            wgt = window[wy, wx]
            acc[k][:, ky, kx] += pred[:, wy, wx] * wgt
            wsum[k][ky, kx] += wgt

    for b0 in range(0, len(needed), max(int(batch_size), 1)):
        ids = needed[b0:b0 + max(int(batch_size), 1)]
        batch = []
        for j in ids:
            t = tiles[j]
            arr = np.asarray(read_fn(t.read))
            if arr.ndim == 2:
                arr = arr[None]
            pad = ((0, 0),) + t.pad
            if any(p for pp in t.pad for p in pp):
                mode = pad_mode
                if mode == "reflect" and min(arr.shape[-2:]) < 2:
                    mode = "symmetric"  # reflect is undefined on a 1-pixel axis
                arr = np.pad(arr, pad, mode=mode)
            batch.append(arr)
        preds = np.asarray(predict_fn(np.stack(batch)))
        if preds.ndim != 4 or preds.shape[0] != len(ids) or preds.shape[-2:] != batch[0].shape[-2:]:
            raise ValueError(f"predict_fn returned shape {preds.shape} for batch "
                             f"{(len(ids),) + batch[0].shape}")
        if out is None:
            out = np.zeros((preds.shape[1], h, w), np.float32)
        for j, pred in zip(ids, preds):
            accumulate(j, pred.astype(np.float64, copy=False))
        done = ids[-1]
        while next_write < len(tiles) and final_after[next_write] <= done:
            t = tiles[next_write]
            out[(slice(None),) + t.core] = (acc.pop(next_write) / wsum.pop(next_write)).astype(np.float32)
            if on_tile_written is not None:
                on_tile_written(t)
            next_write += 1
    return out


def _centroids(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Label ids (> 0) and their centroids ``(n, 2)`` (y, x) in array coordinates."""
    lab = np.asarray(labels).ravel()
    ids, inv = np.unique(lab, return_inverse=True)
    yy, xx = np.indices(np.asarray(labels).shape[-2:])
    n = np.bincount(inv, minlength=len(ids)).astype(np.float64)
    cy = np.bincount(inv, weights=yy.ravel(), minlength=len(ids)) / n
    cx = np.bincount(inv, weights=xx.ravel(), minlength=len(ids)) / n
    keep = ids > 0
    return ids[keep], np.stack([cy[keep], cx[keep]], axis=1)


def owned_by_tile(centroids, tile: Tile) -> np.ndarray:
    """Whether each centroid lies in the tile's core (the tile "owns" the object).

    A centroid ``(y, x)`` in field coordinates falls in pixel ``floor(y + 0.5), floor(x + 0.5)``;
    since the cores partition the field, every object is owned by exactly one tile.

    Parameters
    ----------
    centroids : array_like
        ``(n, 2)`` float ``(y, x)`` in field coordinates.
    tile : Tile

    Returns
    -------
    numpy.ndarray
        bool ``(n,)``.

    Examples
    --------
    >>> t = tile_grid((128, 128), 64, 8)[1]
    >>> owned_by_tile([[10.0, 63.4], [10.0, 63.5], [70.0, 70.0]], t).tolist()
    [False, True, False]
    """
    c = np.floor(np.asarray(centroids, np.float64).reshape(-1, 2) + 0.5)
    (ys, xs) = tile.core
    return (c[:, 0] >= ys.start) & (c[:, 0] < ys.stop) & (c[:, 1] >= xs.start) & (c[:, 1] < xs.stop)


def owner_mask(labels, tile: Tile) -> np.ndarray:
    """Pixels of the objects of a tile's read window that the tile owns.

    Parameters
    ----------
    labels : array_like
        Instance labels predicted on the tile's read window (shape of ``tile.read``).
    tile : Tile

    Returns
    -------
    numpy.ndarray
        bool mask of the read window: True on objects whose centroid lies in the tile's core.

    Examples
    --------
    >>> t = tile_grid((8, 16), 8, 4)[0]          # core x 0..8, read x 0..12
    >>> lab = np.zeros((8, 12), int); lab[2:4, 1:3] = 1; lab[2:4, 8:11] = 2
    >>> np.unique(lab[owner_mask(lab, t)]).tolist()
    [1]
    """
    labels = np.asarray(labels)
    ids, cen = _centroids(labels)
    cen = cen + np.array([tile.read[0].start, tile.read[1].start])
    owned = ids[owned_by_tile(cen, tile)]
    return np.isin(labels, owned)


def cut_by_halo(labels, tile: Tile, shape) -> np.ndarray:
    """Ids of owned objects that touch the outer edge of the read window inside the field.

    Such an object may extend beyond the halo (it is larger than the halo allows), so its mask is
    cut; callers report these instead of silently cutting them.

    Parameters
    ----------
    labels : array_like
        Instance labels on the tile's read window.
    tile : Tile
    shape : tuple of int
        Field shape (the last two entries are ``(h, w)``): the field edge is not a cut.

    Returns
    -------
    numpy.ndarray
        Sorted label ids.

    Examples
    --------
    >>> t = tile_grid((8, 16), 8, 4)[0]
    >>> lab = np.zeros((8, 12), int); lab[2:4, 3:12] = 1
    >>> cut_by_halo(lab, t, (8, 16)).tolist()
    [1]
    """
    labels = np.asarray(labels)
    h, w = shape[-2:]
    edges = []
    if tile.read[0].start > 0:
        edges.append(labels[0, :])
    if tile.read[0].stop < h:
        edges.append(labels[-1, :])
    if tile.read[1].start > 0:
        edges.append(labels[:, 0])
    if tile.read[1].stop < w:
        edges.append(labels[:, -1])
    if not edges:
        return np.zeros(0, labels.dtype)
    touching = np.unique(np.concatenate(edges))
    touching = touching[touching > 0]
    owned = np.unique(labels[owner_mask(labels, tile)])
    return np.intersect1d(touching, owned)
