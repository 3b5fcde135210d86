"""Smooth blending of per-pixel maps predicted on overlapping tiles.

Per-pixel maps predicted on overlapping tiles (:func:`plateseg.tiling.grid.tile_grid`) are
blended with a smooth window (1 in the core, a raised-cosine taper over the halo) and normalised
by the sum of weights; :class:`plateseg.tiling.grid.TileSchedule` decides when a core is final.
"""
from __future__ import annotations

import logging
from typing import Callable

import numpy as np

from plateseg.tiling.grid import Tile, TileSchedule, _pair, map_windows

__all__ = ["blend_window", "predict_tiled"]

log = logging.getLogger(__name__)


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
    sched = TileSchedule((h, w), tile_size, halo, start)
    tiles, ts, hl = sched.tiles, sched.tile_size, sched.halo
    window = blend_window((ts[0] + 2 * hl[0], ts[1] + 2 * hl[1]), hl, trim).astype(np.float64)
    acc: dict[int, np.ndarray] = {}
    wsum: dict[int, np.ndarray] = {}

    def accumulate(j: int, pred: np.ndarray):
        tj = tiles[j]
        oy, ox = tj.core[0].start - hl[0], tj.core[1].start - hl[1]  # window origin (field)
        for k in sched.neighbours(tj):
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

    def read_padded(j):
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
        return arr

    def predict(batch, ids):
        preds = np.asarray(predict_fn(np.stack(batch)))
        if preds.ndim != 4 or preds.shape[0] != len(ids) or preds.shape[-2:] != batch[0].shape[-2:]:
            raise ValueError(f"predict_fn returned shape {preds.shape} for batch "
                             f"{(len(ids),) + batch[0].shape}")
        return preds

    # the model runs on one batch while the next batch is read
    for ids, preds in map_windows(predict, lambda ids: [read_padded(j) for j in ids], sched.batches(batch_size)):
        if out is None:
            out = np.zeros((preds.shape[1], h, w), np.float32)
        for j, pred in zip(ids, preds):
            accumulate(j, pred.astype(np.float64, copy=False))
        for t in sched.ready(ids[-1]):
            out[(slice(None),) + t.core] = (acc.pop(t.number) / wsum.pop(t.number)).astype(np.float32)
            if on_tile_written is not None:
                on_tile_written(t)
    return out
