"""Global thresholds and ranges of a field too large to hold, computed block by block.

A whole-slide field is segmented block by block (:func:`plateseg.tiling.instances.tiled_labels`), but a
global threshold (Otsu, Li) must be the *field's*, or every block would cut at its own level. These
functions stream the field: each block is read with a halo (so that a smoothing ``transform`` sees what it
would see on the whole field), its core transformed and reduced (range, then histogram), never the whole
field at once.
"""
from __future__ import annotations

import numpy as np
from skimage import filters

__all__ = ["THRESHOLDS", "field_range", "field_threshold"]

THRESHOLDS = {"otsu": filters.threshold_otsu, "li": filters.threshold_li}


def _reduced_cores(reduce, read_fn, shape, transform, block_size: int, halo: int, threads: int = 1):
    """``reduce(core)`` of every block's transformed core, in block order, ``threads`` blocks at a time
    (a generator)."""
    from plateseg.tiling.grid import map_windows, tile_grid

    def core(window, t):
        window = np.asarray(window)
        return reduce((window if transform is None else transform(window))[t.core_in_read])

    tiles = tile_grid(tuple(shape[-2:]), block_size, halo)
    return (r for _, r in map_windows(core, lambda t: read_fn(t.read), tiles, threads))


def field_range(read_fn, shape, transform=None, block_size: int = 2048, halo: int = 64,
                threads: int = 1) -> tuple[float, float]:
    """``(min, max)`` of ``transform(field)`` over a field, block by block (``threads`` blocks at a time).

    Examples
    --------
    >>> img = np.arange(48.0).reshape(6, 8)
    >>> field_range(lambda s: img[s], img.shape, lambda w: 2 * w, block_size=4, halo=1)
    (0.0, 94.0)
    """
    ranges = list(_reduced_cores(lambda core: (float(core.min()), float(core.max())), read_fn, shape, transform,
                                 block_size, halo, threads))
    return min(lo for lo, _ in ranges), max(hi for _, hi in ranges)


def field_threshold(read_fn, shape, threshold: str = "li", transform=None, block_size: int = 2048, halo: int = 64,
                    bins: int = 256, threads: int = 1) -> float:
    """The global ``threshold`` of ``transform(field)`` (e.g. the smoothed field), computed block by block.

    Two passes (range, then a histogram of ``bins`` bins over it). Otsu on 256 bins is exactly
    ``skimage.filters.threshold_otsu`` of the whole transformed field; Li is iterated on a histogram of at
    least 4096 bins (bin centres; as ``skimage.filters.threshold_li`` to about a bin).

    Parameters
    ----------
    read_fn : callable
        ``read_fn((ys, xs))`` returns the single-channel field's pixels in those slices.
    shape : tuple of int
        ``(h, w)`` of the field.
    threshold : {"otsu", "li"}
    transform : callable, optional
        Applied to each block's window (with its halo) before its core is counted.
    block_size, halo : int
        Blocks of the passes (the halo should cover the transform's reach).
    bins : int
        Histogram bins (Li: at least 4096).
    threads : int
        Blocks transformed at once (:func:`plateseg.tiling.grid.map_windows`); the threshold does not
        depend on it.

    Examples
    --------
    >>> from scipy import ndimage as ndi
    >>> rng = np.random.default_rng(0)
    >>> img = rng.normal(100, 5, (64, 96)); img[10:30, 20:50] += 60
    >>> smooth = lambda w: ndi.gaussian_filter(w.astype(np.float32), 1.0)
    >>> t = field_threshold(lambda s: img[s], img.shape, "otsu", smooth, block_size=32, halo=16)
    >>> bool(np.isclose(t, filters.threshold_otsu(smooth(img))))
    True
    """
    if threshold not in THRESHOLDS:
        raise ValueError(f"threshold must be one of {sorted(THRESHOLDS)}, got {threshold!r}")
    lo, hi = field_range(read_fn, shape, transform, block_size, halo, threads)
    n_bins = int(bins) if threshold == "otsu" else max(int(bins), 4096)
    counts = np.zeros(n_bins, np.int64)
    for hist in _reduced_cores(lambda core: np.histogram(core, bins=n_bins, range=(lo, hi))[0], read_fn, shape,
                               transform, block_size, halo, threads):
        counts += hist
    edges = np.linspace(lo, hi, n_bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    if threshold == "otsu":
        return float(filters.threshold_otsu(hist=(counts, centres)))
    return _li_from_histogram(counts, centres)


def _li_from_histogram(counts, centres, tolerance: float | None = None) -> float:
    """Li's minimum cross-entropy threshold iterated on a histogram (as ``skimage.filters.threshold_li``)."""
    c = centres - centres[0]
    tolerance = (c[1] - c[0]) / 2 if tolerance is None else tolerance
    t_next, t_curr = float(np.average(c, weights=counts)), -2 * tolerance
    while abs(t_next - t_curr) > tolerance:
        t_curr = t_next
        fore = c > t_curr
        if counts[fore].sum() == 0 or counts[~fore].sum() == 0:
            break
        mean_fore, mean_back = np.average(c[fore], weights=counts[fore]), np.average(c[~fore], weights=counts[~fore])
        if mean_back <= 0:
            break
        t_next = float((mean_back - mean_fore) / (np.log(mean_back) - np.log(mean_fore)))
    return float(t_next + centres[0])
