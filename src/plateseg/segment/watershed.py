"""Instances from the U-Net's per-pixel maps by marker-controlled watershed.

Markers come from one of three sources (seeds 000, 003, 004):

* ``"boundary"``: connected components of foreground minus boundary (seed 004);
* ``"centre"``: peaks of the centre heatmap (seed 000, CenterUNet);
* ``"points"``: given points, e.g. Mask R-CNN centroids (seed 003).

The inverted foreground probability is flooded from the markers inside the foreground mask; then
objects under a minimum area are removed and holes are filled.
"""
from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.segmentation import watershed

from plateseg.labels import dense_labels, fill_label_holes, remove_small

__all__ = ["markers_from_maps", "instances_from_maps"]

log = logging.getLogger(__name__)

MODES = ("boundary", "centre", "points")


def markers_from_maps(maps, mode: str = "boundary", points=None, fg_threshold: float = 0.5,
                      boundary_threshold: float = 0.5, peak_min_distance: int = 3,
                      peak_threshold: float = 0.3, min_marker_area: int = 3) -> np.ndarray:
    """Watershed markers (int32 labels) from the maps; see :func:`instances_from_maps`.

    Examples
    --------
    >>> maps = np.zeros((3, 5, 9), np.float32); maps[0, 1:4, 1:8] = 1; maps[1, :, 4] = 1
    >>> np.unique(markers_from_maps(maps, "boundary", min_marker_area=1)).tolist()
    [0, 1, 2]
    """
    maps = np.asarray(maps)
    fg = maps[0] >= fg_threshold
    if mode == "boundary":
        seeds = fg & (maps[1] < boundary_threshold)
        markers, _ = ndi.label(seeds)
        markers = remove_small(markers, min_marker_area)
    elif mode in ("centre", "points"):
        if mode == "centre":
            pts = peak_local_max(maps[2], min_distance=max(int(peak_min_distance), 1),
                                 threshold_abs=peak_threshold, labels=fg.astype(np.int32),
                                 exclude_border=False)
        else:
            if points is None:
                raise ValueError('mode="points" needs points')
            pts = np.floor(np.asarray(points, np.float64).reshape(-1, 2) + 0.5).astype(np.int64)
        h, w = fg.shape
        inside = (pts[:, 0] >= 0) & (pts[:, 0] < h) & (pts[:, 1] >= 0) & (pts[:, 1] < w)
        pts = pts[inside]
        pts = pts[fg[pts[:, 0], pts[:, 1]]]
        markers = np.zeros(fg.shape, np.int32)
        markers[pts[:, 0], pts[:, 1]] = np.arange(1, len(pts) + 1, dtype=np.int32)
    else:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return markers.astype(np.int32, copy=False)


def instances_from_maps(maps, mode: str = "centre", points=None, fg_threshold: float = 0.5,
                        boundary_threshold: float = 0.5, peak_min_distance: int = 3,
                        peak_threshold: float = 0.3, min_area: int = 30, fill_holes: bool = True,
                        min_marker_area: int = 3, keep_unseeded: bool = True) -> np.ndarray:
    """Instance labels from foreground / boundary / centre maps by marker-controlled watershed.

    Parameters
    ----------
    maps : array_like
        ``(3, h, w)`` probabilities in heads order ``[foreground, boundary, centre]`` (only
        the foreground is needed for ``mode="points"``; the boundary is only used by
        ``"boundary"``, the centre only by ``"centre"``).
    mode : {"boundary", "centre", "points"}
        Marker source: connected components of ``foreground >= fg_threshold`` and
        ``boundary < boundary_threshold``; local maxima of the centre heatmap inside the
        foreground; or the given ``points``.
    points : array_like, optional
        ``(n, 2)`` ``(y, x)`` marker positions for ``mode="points"`` (points outside the
        foreground are ignored).
    fg_threshold, boundary_threshold : float
        Probability thresholds.
    peak_min_distance : int
        Minimum distance between centre peaks (pixels), ``mode="centre"``.
    peak_threshold : float
        Minimum heatmap value of a peak, ``mode="centre"``.
    min_area : int
        Objects with fewer pixels are removed (after flooding).
    fill_holes : bool
        Fill holes inside each object.
    min_marker_area : int
        Marker components smaller than this are dropped (``mode="boundary"``): specks of
        foreground between boundary pixels would otherwise split a nucleus.
    keep_unseeded : bool
        Foreground components that received no marker become one object each instead of
        being lost (e.g. a nucleus whose centre peak was missed).

    Returns
    -------
    numpy.ndarray
        uint32 ``(h, w)`` labels, sequential 1..N (0 = background).

    Examples
    --------
    Two touching squares separated by the boundary map:

    >>> maps = np.zeros((3, 6, 12), np.float32)
    >>> maps[0, 1:5, 1:11] = 0.9; maps[1, 1:5, 5:7] = 0.8
    >>> lab = instances_from_maps(maps, "boundary", min_area=4)
    >>> lab.dtype, int(lab.max()), lab[3].tolist()
    (dtype('uint32'), 2, [0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 0])
    """
    maps = np.asarray(maps, np.float32)
    if maps.ndim != 3:
        raise ValueError(f"maps must be (c, h, w), got {maps.shape}")
    fg_prob = maps[0]
    fg = fg_prob >= fg_threshold
    markers = markers_from_maps(maps, mode, points, fg_threshold, boundary_threshold,
                                peak_min_distance, peak_threshold, min_marker_area)
    labels = watershed(1.0 - fg_prob, markers=markers, mask=fg)
    labels = labels.astype(np.int64, copy=False)
    if keep_unseeded:
        rest, n_rest = ndi.label(fg & (labels == 0))
        if n_rest:
            labels = np.where(rest > 0, rest + labels.max(), labels)
    labels = remove_small(labels, min_area)
    if fill_holes:
        labels = fill_label_holes(labels)
    labels = dense_labels(labels)[1]
    return labels.astype(np.uint32)
