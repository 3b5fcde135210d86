"""The tile grid shared by every engine, its tile scheduler and tile ownership.

A field of shape ``(h, w)`` is cut into a regular grid of ``tile_size`` squares (so a tile is one
zarr chunk). Each tile is read with a ``halo`` of context around its *core*, clipped to the field;
tiles at the field edge are padded (reflect) to the uniform size ``tile_size + 2 * halo`` so that
they can be batched. :class:`TileSchedule` orders reads and core writes for both tiled drivers,
blended maps (:mod:`plateseg.tiling.blend`) and tiled instances (:mod:`plateseg.tiling.instances`), and
:func:`map_windows` runs every tiled or blockwise loop's per-window work (``threads`` windows at a time
with dask, the next window read meanwhile).

Objects belong to exactly one tile: the one whose core holds their centroid (StarDist's
"responsible block"); see :func:`owned_by_tile` and :func:`owner_mask`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from plateseg.labels import label_centroids

log = logging.getLogger(__name__)

__all__ = [
    "Tile",
    "tile_grid",
    "TileSchedule",
    "owned_by_tile",
    "owner_mask",
    "cut_by_halo",
    "map_cores",
    "map_windows",
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


class TileSchedule:
    """The order in which a tiled job reads tiles and writes their cores (one scheduler for all).

    Tiles are read in row-major order from the first tile whose read window overlaps the core of
    tile ``start``; the core of tile ``k`` is final (can be written) once every tile whose read
    window overlaps it has been read, and cores are written in tile order, each exactly once. So
    the output may be a chunked on-disk array written chunk by chunk, memory holds the pending
    tiles of about one row, and a killed job resumes with ``start`` = the first unwritten tile.
    The drivers read and process :meth:`batches` with :func:`map_windows`.

    Parameters
    ----------
    shape : tuple of int
        Field shape (the last two entries are ``(h, w)``).
    tile_size, halo : int or (int, int)
        See :func:`tile_grid`.
    start : int
        First tile whose core is written.

    Attributes
    ----------
    tiles : list of Tile
        :func:`tile_grid` of the field.
    final_after : list of int
        For each tile, the last tile that must be read before its core is final (by symmetry also
        the last core its read window reaches).
    needed : list of int
        The tiles to read, ascending.

    Examples
    --------
    >>> s = TileSchedule((64, 64), 16, 4, start=5)
    >>> s.neighbours(s.tiles[5]), s.needed[:3], s.final_after[5]
    ([0, 1, 2, 4, 5, 6, 8, 9, 10], [0, 1, 2], 10)
    >>> [[t.number for t in s.ready(b[-1])] for b in s.batches(4)][:3]
    [[], [], [5, 6, 7]]
    """

    def __init__(self, shape, tile_size, halo, start: int = 0):
        h, w = (int(v) for v in shape[-2:])
        self.tile_size = _pair(tile_size, "tile_size")
        self.halo = _pair(halo, "halo")
        self.tiles = tile_grid((h, w), self.tile_size, self.halo)
        self.ny, self.nx = self.tiles[-1].index[0] + 1, self.tiles[-1].index[1] + 1
        self.reach = tuple(-(-hl // ts) if hl > 0 else 0 for ts, hl in zip(self.tile_size, self.halo))
        self.start = int(start)
        self.final_after = [max(self.neighbours(t)) for t in self.tiles]
        self.needed = sorted({j for t in self.tiles[self.start:] for j in self.neighbours(t)})
        self.next_write = self.start

    def neighbours(self, tile: Tile) -> list[int]:
        """Numbers of the tiles whose read windows can overlap ``tile``'s core (itself included)."""
        (r, c), (ry, rx) = tile.index, self.reach
        return [rr * self.nx + cc
                for rr in range(max(r - ry, 0), min(r + ry, self.ny - 1) + 1)
                for cc in range(max(c - rx, 0), min(c + rx, self.nx - 1) + 1)]

    def batches(self, batch_size: int):
        """The tiles to read, ``batch_size`` numbers at a time."""
        bs = max(int(batch_size), 1)
        for b0 in range(0, len(self.needed), bs):
            yield self.needed[b0:b0 + bs]

    def ready(self, done: int):
        """Tiles whose cores became final once tiles up to ``done`` are read, in write order."""
        while self.next_write < len(self.tiles) and self.final_after[self.next_write] <= done:
            t = self.tiles[self.next_write]
            self.next_write += 1
            yield t


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
    ids, cen = label_centroids(labels)
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


def map_cores(fn, read_fn, shape, block_size, halo, out=None, threads: int = 1):
    """``out[core] = fn(window)[core]`` for every block of a field: each pixel computed in the window of the
    block whose core holds it.

    For a pixel-wise result whose ids are global (cells carry their nucleus's label): with a halo that covers
    everything that decides a pixel (for cells, the seeds within reach and their paths), the result equals
    ``fn`` on the whole field, and only ``threads`` windows (and the next one) are in memory
    (:func:`map_windows`); the cores are written in block order.

    Parameters
    ----------
    fn : callable
        ``fn(window, origin)`` returns the ``(h, w)`` result of a window read by ``read_fn`` whose top-left
        pixel is ``origin`` in the field.
    read_fn : callable
        ``read_fn((ys, xs))``: the field's data in those slices (any structure ``fn`` takes).
    shape : tuple of int
        ``(h, w)`` of the field.
    block_size, halo : int
    out : array-like, optional
        ``(h, w)`` target (e.g. a zarr array); default a numpy array of ``fn``'s dtype.
    threads : int
        Blocks computed at once (:func:`map_windows`); the result does not depend on it.

    Examples
    --------
    >>> img = np.arange(64).reshape(8, 8)
    >>> res = map_cores(lambda w, origin: w + origin[0], lambda s: img[s], img.shape, 4, 1)
    >>> bool((res[4:, :] == img[4:, :] + 3).all()) and bool((res[:4] == img[:4]).all())
    True
    """

    def core(window, t):
        return np.asarray(fn(window, (t.read[0].start, t.read[1].start)))[t.core_in_read]

    tiles = tile_grid(tuple(shape[-2:]), block_size, halo)
    for t, res in map_windows(core, lambda t: read_fn(t.read), tiles, threads):
        if out is None:
            out = np.zeros(tuple(shape[-2:]), res.dtype)
        out[t.core] = res
    return out


def map_windows(fn, read_fn, keys, threads: int = 1):
    """``(key, fn(read_fn(key), key))`` for every key, in the keys' order, ``threads`` windows at a time with dask.

    The one loop of every tiled or blockwise step (blocks of whole slides, model batches of tiles). The keys
    are taken in waves of ``threads``: one dask graph per wave (``dask.compute``, threaded scheduler,
    ``threads + 1`` workers) runs ``fn`` on each window of the wave -- the first one read during the previous
    wave, the others read in their own task -- and reads the window of the next wave's first key meanwhile.
    The wave's results are yielded, in key order, before the next wave starts. So at most ``threads + 1``
    windows (plus one wave's results) are in memory, whatever the number of keys; with ``threads`` 1, one
    window is processed while the next is read. Nothing is read while the caller consumes a wave's results
    (the next wave's first window was read before), so the caller may write each key's result into the array
    it reads from where no other key's window overlaps it (e.g. relabelling block cores in place). The results
    do not depend on ``threads`` as long as ``fn`` is a pure function of its window; the threads run at once
    where ``fn`` spends its time in C loops that release the GIL (numpy, ``scipy.ndimage``, most of
    scikit-image).

    Parameters
    ----------
    fn : callable
        ``fn(window, key)``: the work on one window (must not write shared state).
    read_fn : callable
        ``read_fn(key)``: the window (any structure) of a key.
    keys : iterable
        E.g. :class:`Tile` objects, or the tile numbers of a batch (:meth:`TileSchedule.batches`).
    threads : int
        Windows processed at once (the rule's threads).

    Yields
    ------
    key, result

    Examples
    --------
    >>> img = np.arange(16).reshape(4, 4)
    >>> tiles = tile_grid(img.shape, 2, 0)
    >>> [(t.number, int(s)) for t, s in map_windows(lambda w, t: w.sum(), lambda t: img[t.read], tiles, threads=3)]
    [(0, 10), (1, 18), (2, 42), (3, 50)]
    """
    import dask

    keys, threads = list(keys), max(int(threads), 1)
    if not keys:
        return

    def run(i, window):
        return fn(read_fn(keys[i]) if window is None else window, keys[i])

    def read(i):
        return read_fn(keys[i])

    window = read_fn(keys[0])
    for w0 in range(0, len(keys), threads):
        wave = range(w0, min(w0 + threads, len(keys)))
        tasks = [dask.delayed(run, pure=False)(i, dask.delayed(window, traverse=False) if i == w0 else None)
                 for i in wave]
        if wave.stop < len(keys):  # the next wave's first window, read while this wave runs
            tasks.append(dask.delayed(read, pure=False)(wave.stop))
        window = None
        done = dask.compute(*tasks, scheduler="threads", num_workers=len(tasks))
        window = done[len(wave)] if wave.stop < len(keys) else None
        for i, result in zip(wave, done):
            yield keys[i], result
