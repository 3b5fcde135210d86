"""Classical nucleus segmentation: the CellProfiler IdentifyPrimaryObjects-style baseline.

Smoothing, a global threshold (Otsu or Li) on a background-flattened image, hole filling,
then distance-transform watershed to split touching nuclei, and a size filter. This is the
baseline that the learned engines must beat.
"""
from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage as ndi
from skimage import measure, morphology, segmentation
from skimage.feature import peak_local_max

from plateseg.labels import relabel_sequential
from plateseg.segment.threshold import THRESHOLDS

__all__ = ["segment_classical", "smoothed"]

def _method(threshold: str) -> str:
    if threshold not in THRESHOLDS:
        raise ValueError(f"threshold must be one of {sorted(THRESHOLDS)}, got {threshold!r}")
    return threshold


def smoothed(image, sigma: float = 1.0, background_size: int = 0) -> np.ndarray:
    """The image :func:`segment_classical` thresholds: background-flattened (grey opening), then Gaussian-smoothed.

    Examples
    --------
    >>> smoothed(np.ones((4, 4)), sigma=1).dtype
    dtype('float32')
    """
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
        :func:`plateseg.segment.threshold.field_threshold`, when the image is one block of it).
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
    smooth = smoothed(image, sigma, background_size)
    if isinstance(threshold, str):
        lo, hi = float(smooth.min()), float(smooth.max())
        if hi - lo <= 1e-4 * max(1.0, abs(hi)):  # blank or saturated: no contrast a float32 histogram can split
            return np.zeros(image.shape, dtype=np.uint32)
        threshold = THRESHOLDS[_method(threshold)](smooth)
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
