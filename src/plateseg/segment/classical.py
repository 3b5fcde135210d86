"""Classical nucleus segmentation: the CellProfiler IdentifyPrimaryObjects-style baseline.

Smoothing, a global threshold (Otsu or Li) on a background-flattened image, hole filling,
then distance-transform watershed to split touching nuclei, and a size filter. This is the
baseline that the learned engines must beat.
"""
from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage as ndi
from skimage import filters, measure, morphology, segmentation
from skimage.feature import peak_local_max

from plateseg.labels import relabel_sequential

__all__ = ["segment_classical", "field_threshold"]

_METHODS = {"otsu": filters.threshold_otsu, "li": filters.threshold_li}


def _method(threshold: str) -> str:
    if threshold not in _METHODS:
        raise ValueError(f"threshold must be one of {sorted(_METHODS)}, got {threshold!r}")
    return threshold


def _smoothed(image, sigma: float, background_size: int) -> np.ndarray:
    """The image segment_classical thresholds: background-flattened (grey opening), then Gaussian-smoothed."""
    img = np.asarray(image).astype(np.float32, copy=False)
    if background_size and background_size > 0:
        img = img - ndi.grey_opening(img, size=(int(background_size),) * 2, mode="nearest")
    return ndi.gaussian_filter(img, sigma) if sigma > 0 else img

log = logging.getLogger(__name__)


def segment_classical(
    image: np.ndarray,
    sigma: float = 1.0,
    background_size: int = 0,
    threshold: str | float = "li",
    threshold_scale: float = 1.0,
    min_distance: int = 3,
    distance_sigma: float = 1.0,
    min_area: int = 30,
    max_area: int | None = None,
    fill_holes: bool = True,
) -> np.ndarray:
    """Segment nuclei in a single-channel image.

    Parameters
    ----------
    image : (H, W) array
        Nuclear stain, any numeric dtype.
    sigma : float
        Gaussian smoothing before thresholding, in pixels.
    background_size : int
        If > 0, subtract the background estimated by a grey opening with a square of this edge in
        pixels (choose it larger than the largest nucleus), which flattens uneven illumination.
    threshold : {"otsu", "li"} or float
        Global threshold method on the smoothed image, or its value (e.g. a whole field's, from
        :func:`field_threshold`, when the image is one block of it).
    threshold_scale : float
        Multiplies the threshold (CellProfiler's "threshold correction factor").
    min_distance : int
        Minimum distance in pixels between two nucleus centres (watershed markers).
    distance_sigma : float
        Smoothing of the distance transform before finding its peaks (avoids over-splitting).
    min_area, max_area : int
        Objects outside this range of pixel areas are removed.
    fill_holes : bool
        Fill holes in the foreground mask.

    Returns
    -------
    labels : (H, W) uint32
        0 for background, 1..N sequential.

    Examples
    --------
    >>> img = np.zeros((40, 60)); img[5:15, 5:15] = 100; img[20:35, 30:50] = 80
    >>> lab = segment_classical(img, sigma=1, min_area=10)
    >>> int(lab.max())
    2
    """
    if image.ndim != 2:
        raise ValueError(f"segment_classical expects a 2-D image, got shape {image.shape}")
    smooth = _smoothed(image, sigma, background_size)
    if isinstance(threshold, str):
        lo, hi = float(smooth.min()), float(smooth.max())
        if hi - lo <= 1e-4 * max(1.0, abs(hi)):  # blank or saturated: no contrast a float32 histogram can split
            return np.zeros(image.shape, dtype=np.uint32)
        threshold = _METHODS[_method(threshold)](smooth)
    mask = smooth > float(threshold) * threshold_scale
    if fill_holes:
        mask = ndi.binary_fill_holes(mask)
    mask = morphology.remove_small_objects(mask, max_size=max(min_area // 2, 1) - 1) if min_area > 1 else mask

    dist = ndi.distance_transform_edt(mask)
    if distance_sigma > 0:
        dist = ndi.gaussian_filter(dist, distance_sigma)
    comp = measure.label(mask)
    peaks = peak_local_max(dist, min_distance=max(int(min_distance), 1), labels=comp, exclude_border=False)
    markers = np.zeros(mask.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    # components without a peak (flat plateaus) still get one marker
    missing = np.setdiff1d(np.unique(comp[mask]), np.unique(comp[tuple(peaks.T)]) if len(peaks) else [])
    for i, lab in enumerate(missing, start=len(peaks) + 1):
        ys, xs = np.nonzero(comp == lab)
        markers[ys[len(ys) // 2], xs[len(xs) // 2]] = i
    labels = segmentation.watershed(-dist, markers, mask=mask)

    areas = np.bincount(labels.ravel())
    bad = areas < min_area
    if max_area:
        bad |= areas > max_area
    bad[0] = False
    labels[bad[labels]] = 0
    return relabel_sequential(labels)


def field_threshold(read_fn, shape, threshold: str = "li", sigma: float = 1.0, background_size: int = 0,
                    block_size: int = 2048, halo: int = 64, bins: int = 256) -> float:
    """The global threshold :func:`segment_classical` would use on a whole field, computed block by block.

    The smoothed field (:func:`segment_classical`'s background flattening and Gaussian; each block read
    with ``halo`` of context, so the smoothing is the whole field's) is histogrammed in two passes (range,
    then counts), never held whole. Otsu on the ``bins`` = 256 histogram is exactly
    ``skimage.filters.threshold_otsu`` of the whole smoothed field; Li is iterated on the histogram (bin
    centres; ``bins`` sets its precision).

    Parameters
    ----------
    read_fn : callable
        ``read_fn((ys, xs))`` returns the single-channel field's pixels in those slices.
    shape : tuple of int
        ``(h, w)`` of the field.
    threshold : {"otsu", "li"}
    sigma, background_size : float, int
        As :func:`segment_classical`.
    block_size, halo : int
        Blocks of the passes (the halo should cover the smoothing and the background window).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> img = rng.normal(100, 5, (64, 96)); img[10:30, 20:50] += 60
    >>> t = field_threshold(lambda s: img[s], img.shape, "otsu", block_size=32, halo=16)
    >>> bool(np.isclose(t, filters.threshold_otsu(ndi.gaussian_filter(img.astype(np.float32), 1.0))))
    True
    """
    from plateseg.tiling.grid import tile_grid

    method = _method(threshold)
    tiles = tile_grid(tuple(shape[-2:]), block_size, halo)

    def cores():
        for t in tiles:
            yield _smoothed(read_fn(t.read), sigma, background_size)[t.core_in_read]

    lo, hi = np.inf, -np.inf
    for core in cores():
        lo, hi = min(lo, float(core.min())), max(hi, float(core.max()))
    n_bins = int(bins) if method == "otsu" else max(int(bins), 4096)
    counts = np.zeros(n_bins, np.int64)
    for core in cores():
        counts += np.histogram(core, bins=n_bins, range=(lo, hi))[0]
    edges = np.linspace(lo, hi, n_bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    if method == "otsu":
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
