"""Instances of a whole field from a per-window instance detector, tile by tile.

Each tile of :func:`plateseg.tiling.grid.tile_grid` is read with a halo; an instance belongs to
the tile whose core holds its centroid (:func:`plateseg.tiling.grid.owned_by_tile`; instances cut
by the halo's outer edge are left to the neighbour that owns them), and overlapping masks are
resolved pixel by pixel to the nearest instance centroid among the masks covering the pixel
(:func:`plateseg.labels.paint_instances`, seed 004). The detector is a plain function, so the
tiling and ownership logic is tested with a perfect fake detector; the Mask R-CNN engine
(:func:`plateseg.engines.maskrcnn.predict_instances`) wraps its model in one.

Ownership is exact when the detector sees an object the same in every window holding it whole:
with a halo of at least the largest object's extent, an object is whole in its owner's window, and
a piece of it cut by another tile's outer edge has its centroid in that tile's halo, not its core.
A real model sees different context in neighbouring windows, so an object whose centroid lies
within a pixel or so of a core seam can (rarely) be claimed by both tiles or by neither. Owned
masks touching the halo's outer edge (objects larger than the halo allows) are flagged
``cut_by_halo`` in the table and logged.

Resuming a killed job: label ids are deterministic, ``tile.number * id_stride + k`` (``k`` = 1, 2,
... among the instances a tile owns, by decreasing score), cores are written in tile order, each
exactly once (:class:`plateseg.tiling.grid.TileSchedule`), and ``on_tile_written(tile, rows)``
hands over the table rows of the instances that tile owns. A rule persists those rows per tile and
restarts with ``start`` = the first tile whose core is not written; the few earlier tiles whose
instances reach into later cores are detected again (same ids), not written again.
"""
from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from plateseg.labels import mask_box, paint_instances
from plateseg.tiling.grid import Tile, TileSchedule, map_windows, owned_by_tile, tile_grid

__all__ = ["TABLE_COLUMNS", "BoxMasks", "tiled_instances", "tiled_labels", "seam_counts", "seam_note"]

log = logging.getLogger(__name__)

TABLE_COLUMNS = ("label", "score", "y0", "x0", "y1", "x1", "centroid_y", "centroid_x", "area",
                 "tile", "tile_row", "tile_col", "cut_by_halo")


class BoxMasks(NamedTuple):
    """The instance masks of one window as boxes and the masks inside them, for detectors with many instances
    per window (a dense ``(n, h, w)`` stack is ``n`` times the window's pixels).

    ``boxes`` int ``(n, 4)`` ``y0, x0, y1, x1`` (end-exclusive, window coordinates); ``crops`` ``n`` bool
    masks, each of its box's shape (pixels outside every box are background).

    Examples
    --------
    >>> m = BoxMasks(np.array([[2, 3, 4, 6]]), [np.ones((2, 3), bool)])
    >>> [d[:5] for d in _window_detections(m, [0.9], (8, 8))]
    [(0.9, 2, 3, 4, 6)]
    """
    boxes: np.ndarray
    crops: list


def _window_detections(masks, scores, shape):
    """``(score, y0, x0, y1, x1, crop)`` of every non-empty detection of one window.

    ``masks`` is a bool ``(n, h, w)`` stack or a :class:`BoxMasks` with ``(n,)`` ``scores``, or an integer
    ``(h, w)`` label image (one detection per label, in label order; ``scores`` None for 1.0 each, else one per
    label 1..max).
    """
    if isinstance(masks, BoxMasks):
        scores = np.asarray(scores, np.float64).reshape(-1)
        if not (len(scores) == len(masks.boxes) == len(masks.crops)):
            raise ValueError(f"detect_fn gave {len(masks.boxes)} boxes, {len(masks.crops)} masks and "
                             f"{len(scores)} scores")
        for (by, bx, _, _), crop, s in zip(np.asarray(masks.boxes).reshape(-1, 4), masks.crops, scores):
            crop = np.asarray(crop, bool)
            box = mask_box(crop)
            if box is not None:
                y0, x0, y1, x1 = box
                yield float(s), int(by) + y0, int(bx) + x0, int(by) + y1, int(bx) + x1, crop[y0:y1, x0:x1]
        return
    masks = np.asarray(masks)
    if masks.ndim == 2 and masks.shape == tuple(shape) and masks.dtype != bool:
        boxes = ndi.find_objects(masks.astype(np.int64, copy=False))
        scores = np.ones(len(boxes)) if scores is None else np.asarray(scores, np.float64).reshape(-1)
        if len(scores) < len(boxes):
            raise ValueError(f"detect_fn gave labels up to {len(boxes)} and {len(scores)} scores")
        for k, box in enumerate(boxes, start=1):
            if box is not None:
                yield (float(scores[k - 1]), box[0].start, box[1].start, box[0].stop, box[1].stop,
                       masks[box] == k)
        return
    masks = masks.astype(bool, copy=False).reshape(-1, *shape)
    scores = np.asarray(scores, np.float64).reshape(-1)
    if len(scores) != len(masks):
        raise ValueError(f"detect_fn gave {len(masks)} masks and {len(scores)} scores")
    for m, s in zip(masks, scores):
        box = mask_box(m)
        if box is not None:
            y0, x0, y1, x1 = box
            yield float(s), y0, x0, y1, x1, m[y0:y1, x0:x1]


def tiled_instances(detect_fn, read_fn, shape, tile_size, halo, batch_size: int = 1, *,
                     out=None, start: int = 0, on_tile_written=None, id_stride: int = 1024,
                     min_area: int = 1, threads: int = 1, log: logging.Logger | None = None):
    """Instances of a whole field from a per-window detector, tile by tile (see the module docstring).

    Parameters
    ----------
    detect_fn : callable
        ``detect_fn(windows)`` with a list of ``(c, h, w)`` float arrays (read windows, not
        padded, of varying size at the field edge) returns one ``(masks, scores)`` per window:
        bool ``(n, h, w)`` instance masks in window coordinates (thresholded) or a :class:`BoxMasks`, and
        ``(n,)`` scores, by decreasing score; or an integer ``(h, w)`` label image and None (or one score per label).
    read_fn : callable
        ``read_fn((ys, xs))`` returns the field's pixels in the given slices as ``(c, h, w)``.
    shape : tuple of int
        Field shape (the last two entries are ``(h, w)``).
    tile_size, halo : int or (int, int)
        See :func:`plateseg.tiling.grid.tile_grid`.
    batch_size : int
        Windows per ``detect_fn`` call.
    out : array-like, optional
        ``(h, w)`` uint32 target supporting ``out[ys, xs] = values``; default a numpy array.
    start : int
        First tile whose core is written and whose instances are reported (resume).
    on_tile_written : callable, optional
        ``on_tile_written(tile, rows)`` after the tile's core is written, ``rows`` the
        DataFrame (:data:`TABLE_COLUMNS`) of the instances the tile owns.
    id_stride : int
        Label ids are ``tile.number * id_stride + k``, ``k = 1 .. (owned instances)``.
    min_area : int
        Masks with fewer pixels are ignored.
    threads : int
        Batches detected at once, each with the ownership of its instances
        (:func:`plateseg.tiling.grid.map_windows`; ``detect_fn`` must then be thread-safe); the
        next batch is read meanwhile. Cores are painted and written in tile order, so the result
        does not depend on it.

    Returns
    -------
    out : array-like
        ``(h, w)`` uint32 labels, overlaps resolved to the nearest centroid.
    table : pandas.DataFrame
        One row per reported instance (tiles ``start`` and after).

    Examples
    --------
    A detector that finds the one bright square of each window:

    >>> img = np.zeros((1, 32, 32)); img[0, 10:20, 12:22] = 1
    >>> detect = lambda ws: [(w[:1] > 0.5, np.ones(1)) for w in ws]
    >>> lab, tab = tiled_instances(detect, lambda s: img[(slice(None),) + s], img.shape, 16, 8)
    >>> int(lab.max()), tab["label"].tolist(), tab["tile"].tolist(), int((lab > 0).sum())
    (1025, [1025], [1], 100)
    """
    return _tiled_instances(lambda windows, tiles: detect_fn(windows), read_fn, shape, tile_size, halo, batch_size,
                            out=out, start=start, on_tile_written=on_tile_written, id_stride=id_stride,
                            min_area=min_area, threads=threads, log=log)


def _tiled_instances(detect, read_fn, shape, tile_size, halo, batch_size: int = 1, *, out=None, start: int = 0,
                     on_tile_written=None, id_stride: int = 1024, min_area: int = 1, threads: int = 1,
                     log: logging.Logger | None = None, on_detected=None):
    """:func:`tiled_instances` with ``detect(windows, tiles)``, and ``on_detected(tile, n)`` called in tile order
    with the number of detections of each tile's window."""
    log = log or logging.getLogger(__name__)
    h, w = (int(s) for s in shape[-2:])
    sched = TileSchedule((h, w), tile_size, halo, start)
    tiles = sched.tiles
    if len(tiles) * int(id_stride) >= 2**32:
        raise ValueError(f"{len(tiles)} tiles x id_stride {id_stride} overflows uint32 labels")
    if out is None:
        out = np.zeros((h, w), np.uint32)
    store: dict[int, tuple[list, list]] = {}  # tile -> (paint items, table rows)
    rows_all = []

    def owned_instances(t: Tile, masks, scores):
        """``(paint items, table rows, detections, owned ones cut by the halo)`` of one tile's window."""
        oy, ox = t.read[0].start, t.read[1].start
        wh, ww = t.read[0].stop - oy, t.read[1].stop - ox
        cand, n_detected = [], 0
        for s, y0, x0, y1, x1, crop in _window_detections(masks, scores, (wh, ww)):
            n_detected += 1
            yy, xx = np.nonzero(crop)
            if len(yy) < max(int(min_area), 1):
                continue
            cand.append((float(s), y0, x0, y1, x1, crop, oy + y0 + yy.mean(), ox + x0 + xx.mean(),
                         len(yy)))
        if not cand:
            return [], [], n_detected, 0
        cen = np.array([[c[6], c[7]] for c in cand])
        owned = [c for c, o in zip(cand, owned_by_tile(cen, t)) if o]
        if len(owned) >= id_stride:
            raise ValueError(f"tile {t.number} owns {len(owned)} instances, more than id_stride "
                             f"{id_stride} allows")
        items, rows = [], []
        n_cut = 0
        for k, (s, y0, x0, y1, x1, crop, cy, cx, area) in enumerate(owned, start=1):
            cut = bool((y0 == 0 and oy > 0) or (y1 == wh and oy + wh < h)
                       or (x0 == 0 and ox > 0) or (x1 == ww and ox + ww < w))
            n_cut += cut
            label = t.number * id_stride + k
            items.append((label, oy + y0, ox + x0, crop, cy, cx))
            rows.append((label, s, oy + y0, ox + x0, oy + y1, ox + x1, cy, cx, area, t.number,
                         t.index[0], t.index[1], cut))
        return items, rows, n_detected, n_cut

    def table(rows):
        df = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
        return df.astype({"label": np.uint32, "score": np.float64, "y0": np.int64,
                          "x0": np.int64, "y1": np.int64, "x1": np.int64, "centroid_y": np.float64,
                          "centroid_x": np.float64, "area": np.int64, "tile": np.int64,
                          "tile_row": np.int64, "tile_col": np.int64, "cut_by_halo": bool})

    def read_window(j):
        arr = np.asarray(read_fn(tiles[j].read))
        return arr[None] if arr.ndim == 2 else arr

    def detect_batch(windows, ids):  # in a worker thread: detection and ownership, no shared state
        dets = list(detect(windows, [tiles[j] for j in ids]))
        if len(dets) != len(ids):
            raise ValueError(f"detect_fn returned {len(dets)} results for {len(ids)} windows")
        return [owned_instances(tiles[j], masks, scores) for j, (masks, scores) in zip(ids, dets)]

    batches = map_windows(detect_batch, lambda ids: [read_window(j) for j in ids], sched.batches(batch_size), threads)
    for ids, owned in batches:
        for j, (items, rows, n_detected, n_cut) in zip(ids, owned):
            store[j] = items, rows
            if on_detected is not None:
                on_detected(tiles[j], n_detected)
            if n_cut:
                log.warning("tile %d %s: %d owned instance(s) touch the halo's outer edge (larger "
                            "than the halo allows; their masks may be cut)", j, tiles[j].index, n_cut)
        for t in sched.ready(ids[-1]):
            items = [it for j in sched.neighbours(t) for it in store[j][0]]
            out[t.core] = paint_instances(t.core, items)
            rows = store[t.number][1]
            rows_all.extend(rows)
            if on_tile_written is not None:
                on_tile_written(t, table(rows))
            for j in [j for j in store if sched.final_after[j] <= t.number]:
                del store[j]  # every core this tile's instances can reach is written
    return out, table(rows_all)


def tiled_labels(label_fn, read_fn, shape, block_size, halo, *, out=None, min_area: int = 1, threads: int = 1,
                 log: logging.Logger | None = None):
    """Labels of a whole field from a per-window labeller, block by block, each object owned by one block.

    The field is cut into ``block_size`` blocks read with ``halo`` of context; ``label_fn`` labels each
    window and an object is kept by the block whose core holds its centroid, with its full extent
    (:func:`tiled_instances`). With a halo of at least the largest object's diameter and a labeller
    that sees an object the same in every window holding it whole, the result equals labelling the
    whole field (up to label ids). ``threads`` blocks are labelled at once (dask, the next block's
    window read meanwhile: :func:`plateseg.tiling.grid.map_windows`), so ``threads + 1`` windows and the
    neighbours' owned objects are in memory; the blocks are assembled in block order, so labels, ids and
    table are the same for any ``threads``. Labels are then made sequential (1..N in block order) in a
    second pass over the blocks.

    Parameters
    ----------
    label_fn : callable
        ``label_fn(window, origin)`` with a ``(c, h, w)`` window whose top-left pixel is ``origin`` in the
        field returns its ``(h, w)`` integer labels (called from several threads at once when ``threads``
        > 1: it must not write shared state).
    read_fn, shape, out, min_area, log
        As :func:`tiled_instances` (``out`` e.g. a zarr array, written block by block).
    block_size, halo : int
        Block edge and context in pixels (the halo should be at least the largest object diameter).
    threads : int
        Blocks labelled at once (the rule's threads).

    Returns
    -------
    out : array-like
        ``(h, w)`` uint32 labels ``1..N``.
    table : pandas.DataFrame
        One row per object (:data:`TABLE_COLUMNS` but ``score``, ``label`` the final id), with
        ``window_label``, its label in the window of its block (``tile``); ``cut_by_halo`` marks objects
        that touch their window's outer edge (larger than the halo allows; they may be cut).

    Examples
    --------
    Two blocks of 16 px, a labeller that sees only bright pixels; the object across the seam stays whole:

    >>> from skimage.measure import label
    >>> img = np.zeros((1, 16, 32)); img[0, 4:10, 10:18] = 1; img[0, 2:4, 26:30] = 1
    >>> lab, tab = tiled_labels(lambda w, origin: label(w[0] > 0.5), lambda s: img[(slice(None),) + s], img.shape,
    ...                         16, 8, threads=2)
    >>> sorted(np.unique(lab).tolist()), tab["area"].tolist()
    ([0, 1, 2], [48, 8])
    """
    log = log or logging.getLogger(__name__)
    h, w = (int(s) for s in shape[-2:])
    n_blocks = len(tile_grid((h, w), block_size, halo))

    def detect(windows, tiles):
        labels = [np.asarray(label_fn(win, (t.read[0].start, t.read[1].start))) for win, t in zip(windows, tiles)]
        return [(lab, np.arange(1, int(lab.max(initial=0)) + 1, dtype=np.float64)) for lab in labels]  # score: label

    def detected(t, n):
        log.info("block %d/%d: %d objects in its window", t.number + 1, n_blocks, n)

    stride = max(1024, (2**32 - 1) // (n_blocks + 1))
    out, table = _tiled_instances(detect, read_fn, shape, block_size, halo, out=out, id_stride=stride,
                                  min_area=min_area, threads=threads, log=log, on_detected=detected)
    table = table.rename(columns={"score": "window_label"}).astype({"window_label": np.int64})
    return _relabel_blocks(out, table, (h, w), block_size, threads)


def _relabel_blocks(out, table: pd.DataFrame, shape, block_size, threads: int = 1):
    """``out`` relabelled 1..N (ids in increasing order) block by block, ``threads`` blocks at a time, and
    ``table`` with the new ids (rows of objects that lost every pixel to nearer neighbours are dropped)."""
    cores = [t.core for t in tile_grid(shape, block_size, 0)]

    def read(c):
        return np.asarray(out[c])

    found = [ids for _, ids in map_windows(lambda block, c: np.unique(block), read, cores, threads)]
    present = np.unique(np.concatenate(found + [np.zeros(1, np.uint32)]))
    present = present[present > 0].astype(np.uint64)

    def relabelled(block, c):
        block = block.astype(np.uint64)
        return np.where(block > 0, np.searchsorted(present, block) + 1, 0).astype(np.uint32)

    for c, block in map_windows(relabelled, read, cores, threads):  # written between reads, in block order
        out[c] = block
    table = table[table["label"].astype(np.uint64).isin(present)].copy()
    table["label"] = (np.searchsorted(present, table["label"].to_numpy(np.uint64)) + 1).astype(np.uint32)
    return out, table.reset_index(drop=True)


def seam_counts(table: pd.DataFrame | None, shape, block_size: int, halo: int) -> dict:
    """Seam QC of one field: its blocks, the objects kept whole across a block seam, those larger than the halo.

    Parameters
    ----------
    table : pandas.DataFrame or None
        The :func:`tiled_labels` table of a field labelled block by block (``tile_row``, ``tile_col``, the box
        ``y0, x0, y1, x1`` in field pixels, ``cut_by_halo``), or None for a field labelled whole (one window:
        1 block, no seam, nothing cut by a halo).
    shape : tuple of int
        The field's ``(h, w)``.
    block_size, halo : int
        Block edge and context, as given to :func:`tiled_labels`.

    Returns
    -------
    dict
        ``{"blocks", "on_seams", "cut_by_halo"}``: the number of blocks, of objects whose box crosses their
        owning block's core (kept whole by that block, across a seam) and of objects touching their window's
        outer edge (larger than the halo allows; they may be cut).

    Examples
    --------
    >>> from skimage.measure import label
    >>> img = np.zeros((1, 16, 32)); img[0, 4:10, 10:18] = 1; img[0, 2:4, 26:30] = 1
    >>> _, tab = tiled_labels(lambda w, origin: label(w[0] > 0.5), lambda s: img[(slice(None),) + s], img.shape,
    ...                       16, 8)
    >>> seam_counts(tab, (16, 32), 16, 8)
    {'blocks': 2, 'on_seams': 1, 'cut_by_halo': 0}
    >>> seam_counts(None, (16, 32), 64, 8)
    {'blocks': 1, 'on_seams': 0, 'cut_by_halo': 0}
    """
    from plateseg.tiling.grid import tile_grid

    if table is None:
        return {"blocks": 1, "on_seams": 0, "cut_by_halo": 0}
    y0, x0 = table["tile_row"] * block_size, table["tile_col"] * block_size
    crosses = ((table["y0"] < y0) | (table["y1"] > y0 + block_size)
               | (table["x0"] < x0) | (table["x1"] > x0 + block_size))
    return {"blocks": len(tile_grid(tuple(shape)[-2:], int(block_size), int(halo))), "on_seams": int(crosses.sum()),
            "cut_by_halo": int(table["cut_by_halo"].sum())}


def seam_note(field: int, counts: dict, block_size: int, halo: int, logger: logging.Logger | None = None) -> str:
    """The log text of a field's :func:`seam_counts` (``""`` for a field labelled whole); warns on ``logger`` when
    objects are larger than the halo.

    Examples
    --------
    >>> seam_note(1, {"blocks": 4, "on_seams": 7, "cut_by_halo": 0}, 128, 32)
    '; 4 blocks of 128 px (halo 32): 7 objects across a seam, 0 larger than the halo'
    """
    if counts["cut_by_halo"]:
        (logger or log).warning(
            "field %d: %d objects reach their block window's outer edge (larger than the halo %d px allows; they "
            "may be cut): raise tiling.block_halo", field, counts["cut_by_halo"], halo)
    if counts["blocks"] <= 1:
        return ""
    return (f"; {counts['blocks']} blocks of {block_size} px (halo {halo}): {counts['on_seams']} objects across a "
            f"seam, {counts['cut_by_halo']} larger than the halo")
