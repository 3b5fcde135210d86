"""Model-free utilities on instance label images: numbering, centroids, size filters, hole
filling and overlap resolution (one copy of each; numpy and scipy only, no torch).

A label image is an integer array ``(h, w)`` with 0 for background and one id per object.
"""
from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "relabel_sequential",
    "dense_labels",
    "relabel_instances",
    "label_centroids",
    "centroids",
    "remove_small",
    "fill_label_holes",
    "mask_box",
    "paint_instances",
    "resolve_overlaps",
]

log = logging.getLogger(__name__)


def relabel_sequential(labels: np.ndarray) -> np.ndarray:
    """Relabel to 1..N in order of first appearance (row-major), as uint32.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer labels, 0 = background.

    Returns
    -------
    numpy.ndarray
        uint32 labels of the same shape.

    Examples
    --------
    >>> relabel_sequential(np.array([[0, 7], [3, 7]])).tolist()
    [[0, 1], [2, 1]]
    """
    flat = labels.ravel()
    ids, first = np.unique(flat, return_index=True)
    keep = ids != 0
    ids, first = ids[keep], first[keep]
    order = ids[np.argsort(first)]
    lut = np.zeros(int(labels.max()) + 1 if labels.size else 1, dtype=np.uint32)
    lut[order] = np.arange(1, len(order) + 1, dtype=np.uint32)
    return lut[labels]


def dense_labels(labels) -> tuple[np.ndarray, np.ndarray]:
    """Object ids (ascending) and the label image renumbered 1..n in that order.

    The renumbered image keeps the order of the ids (as :func:`skimage.segmentation.relabel_sequential`)
    and is small enough to index ``bincount``-sized arrays whatever the ids are.

    Parameters
    ----------
    labels : array_like
        Non-negative integer labels, 0 = background.

    Returns
    -------
    ids : numpy.ndarray
        int64 ``(n,)`` original ids, ascending.
    dense : numpy.ndarray
        int64 labels of the same shape, ``k`` where the original id was ``ids[k - 1]``.

    Examples
    --------
    >>> ids, dense = dense_labels(np.array([[0, 9, 9, 4]]))
    >>> ids.tolist(), dense.tolist()
    ([4, 9], [[0, 2, 2, 1]])
    """
    labels = np.asarray(labels)
    ids = np.unique(labels)
    ids = ids[ids > 0]
    lut_size = int(labels.max()) + 1 if labels.size else 1
    lut = np.zeros(lut_size, np.int64)
    lut[ids] = np.arange(1, len(ids) + 1)
    return ids.astype(np.int64), lut[labels.astype(np.int64)]


def relabel_instances(labels, table, drop_empty: bool = True):
    """Number a field's instances 1..N in table order and update the table.

    The new label of an instance is its rank among the table's labels (ascending, i.e. by tile
    and then by decreasing score for :func:`plateseg.engines.maskrcnn.predict_instances` ids).
    The mapping depends only on the table, so a label image too large for memory (zarr) can be
    relabelled chunk by chunk with ``drop_empty=False``:
    ``out[sl] = relabel_instances(out[sl], table, False)[0]``. (:func:`relabel_sequential`
    numbers by first appearance, which needs the whole image and a lookup table as long as the
    largest id, ``tiles x id_stride``.)

    Parameters
    ----------
    labels : array_like
        Integer labels whose non-zero values are all in ``table["label"]``.
    table : pandas.DataFrame
        With a ``label`` column.
    drop_empty : bool
        Drop rows of instances absent from ``labels`` (those that lost all their pixels to
        overlap resolution) before numbering; needs the whole field.

    Returns
    -------
    labels : numpy.ndarray
        uint32, same shape.
    table : pandas.DataFrame
        Sorted by the new ``label``.

    Examples
    --------
    >>> import pandas as pd
    >>> lab = np.array([[0, 2049, 2049, 1025, 0, 7]])
    >>> tab = pd.DataFrame({"label": [7, 1025, 2049, 3000], "score": [.9, .8, .7, .6]})
    >>> new, t = relabel_instances(lab, tab)
    >>> new.tolist(), t["label"].tolist(), t["score"].tolist()
    ([[0, 3, 3, 2, 0, 1]], [1, 2, 3], [0.9, 0.8, 0.7])
    """
    labels = np.asarray(labels)
    ids = np.unique(table["label"].to_numpy().astype(np.int64))
    if drop_empty:
        ids = ids[np.isin(ids, labels)]
    new = np.zeros(labels.shape, np.uint32)
    fg = labels > 0
    vals = labels[fg].astype(np.int64)
    pos = np.searchsorted(ids, vals)
    known = pos < len(ids)
    known[known] = ids[pos[known]] == vals[known]
    if not known.all():
        raise ValueError(f"labels without a table row: {np.unique(vals[~known])[:5].tolist()}")
    new[fg] = pos + 1
    table = table[table["label"].isin(ids)].copy()
    table["label"] = (np.searchsorted(ids, table["label"].to_numpy().astype(np.int64)) + 1
                      ).astype(np.uint32)
    table = table.sort_values("label", kind="stable").reset_index(drop=True)
    return new, table


def label_centroids(labels) -> tuple[np.ndarray, np.ndarray]:
    """Label ids (> 0, ascending) and their centroids ``(n, 2)`` (y, x) in array coordinates.

    Examples
    --------
    >>> ids, cen = label_centroids(np.array([[0, 3, 3], [5, 0, 0]]))
    >>> ids.tolist(), cen.tolist()
    ([3, 5], [[0.0, 1.5], [1.0, 0.0]])
    """
    labels = np.asarray(labels)
    lab = labels.ravel()
    ids, inv = np.unique(lab, return_inverse=True)
    yy, xx = np.indices(labels.shape[-2:])
    n = np.bincount(inv, minlength=len(ids)).astype(np.float64)
    cy = np.bincount(inv, weights=yy.ravel(), minlength=len(ids)) / n
    cx = np.bincount(inv, weights=xx.ravel(), minlength=len(ids)) / n
    keep = ids > 0
    return ids[keep], np.stack([cy[keep], cx[keep]], axis=1)


def centroids(labels) -> np.ndarray:
    """Centroids ``(n, 2)`` ``(y, x)`` of the objects of a label image, by ascending label id.

    For example Mask R-CNN centroids as watershed markers for the U-Net path:
    ``instances_from_maps(maps, mode="points", points=centroids(maskrcnn_labels))``.

    Examples
    --------
    >>> lab = np.zeros((5, 6), int); lab[0:3, 0:3] = 2; lab[4, 4:6] = 7
    >>> centroids(lab).tolist()
    [[1.0, 1.0], [4.0, 4.5]]
    """
    return label_centroids(labels)[1]


def remove_small(labels: np.ndarray, min_area: int) -> np.ndarray:
    """Set objects with fewer than ``min_area`` pixels to background.

    Examples
    --------
    >>> remove_small(np.array([[1, 1, 0, 2]]), 2).tolist()
    [[1, 1, 0, 0]]
    """
    if min_area <= 1:
        return labels
    counts = np.bincount(labels.ravel())
    small = counts < min_area
    small[0] = False
    out = labels.copy()
    out[small[labels]] = 0
    return out


def fill_label_holes(labels: np.ndarray) -> np.ndarray:
    """Fill holes of each object (background pixels fully enclosed by that object).

    Examples
    --------
    >>> lab = np.zeros((5, 5), int); lab[0:5, 0:5] = 2; lab[2, 2] = 0
    >>> int(fill_label_holes(lab)[2, 2])
    2
    """
    out = labels.copy()
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        sub = out[sl]
        filled = ndi.binary_fill_holes(labels[sl] == i)
        sub[filled & (sub == 0)] = i
    return out


def mask_box(mask: np.ndarray):
    """Bounding box ``(y0, x0, y1, x1)`` (end-exclusive) of a bool mask, or None if it is empty.

    Examples
    --------
    >>> m = np.zeros((4, 5), bool); m[1:3, 2] = True
    >>> mask_box(m), mask_box(np.zeros((2, 2), bool))
    ((1, 2, 3, 3), None)
    """
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return None
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def paint_instances(region, instances, lab: np.ndarray | None = None) -> np.ndarray:
    """Paint ``instances`` into ``region`` (y, x slices), nearest centroid wins on overlaps.

    Parameters
    ----------
    region : tuple of slice
        ``(ys, xs)`` of the output in the instances' coordinates.
    instances : iterable
        ``(label, y0, x0, mask, cy, cx)`` with ``mask`` a bool array whose top-left pixel is
        ``(y0, x0)`` and the centroid ``(cy, cx)``, all in the coordinates of ``region``.
    lab : numpy.ndarray, optional
        Output array of the region's shape; default a new uint32 array of zeros.

    Returns
    -------
    numpy.ndarray
        A pixel goes to the covering instance with the smallest squared distance from pixel to
        centroid; on exact ties the earlier instance keeps it.

    Examples
    --------
    >>> m = np.ones((1, 3), bool)
    >>> paint_instances((slice(0, 1), slice(0, 5)), [(1, 0, 0, m, 0, 1), (2, 0, 2, m, 0, 3)]).tolist()
    [[1, 1, 1, 2, 2]]
    """
    ys, xs = region
    H, W = ys.stop - ys.start, xs.stop - xs.start
    if lab is None:
        lab = np.zeros((H, W), np.uint32)
    best = np.full((H, W), np.inf)
    for label, y0, x0, mask, cy, cx in instances:
        a0, a1 = max(y0, ys.start), min(y0 + mask.shape[0], ys.stop)
        b0, b1 = max(x0, xs.start), min(x0 + mask.shape[1], xs.stop)
        if a0 >= a1 or b0 >= b1:
            continue
        m = mask[a0 - y0:a1 - y0, b0 - x0:b1 - x0]
        dy = (np.arange(a0, a1, dtype=np.float64) - cy) ** 2
        dx = (np.arange(b0, b1, dtype=np.float64) - cx) ** 2
        d = dy[:, None] + dx[None, :]
        sub = (slice(a0 - ys.start, a1 - ys.start), slice(b0 - xs.start, b1 - xs.start))
        win = m & (d < best[sub])
        lab[sub][win] = label
        best[sub][win] = d[win]
    return lab


def resolve_overlaps(masks, centroids=None) -> np.ndarray:
    """Instance labels from possibly overlapping masks: contested pixels go to the nearest centroid.

    Seed 004's rule for Mask R-CNN: a pixel covered by one mask belongs to it; a pixel covered by
    several belongs to the one whose centroid is nearest (Euclidean distance from the pixel's
    coordinates); exact ties go to the mask listed first (pass masks by decreasing score).

    Parameters
    ----------
    masks : array_like
        bool ``(n, h, w)``.
    centroids : array_like, optional
        ``(n, 2)`` ``(y, x)``; default the centroid of each mask.

    Returns
    -------
    numpy.ndarray
        uint32 ``(h, w)``: ``i + 1`` where mask ``i`` won, 0 where no mask covers the pixel. (A
        mask can lose all its pixels, e.g. one lying inside a larger mask near its centroid.)

    Examples
    --------
    >>> m = np.zeros((2, 1, 7), bool); m[0, 0, :5] = True; m[1, 0, 2:] = True
    >>> resolve_overlaps(m).tolist()  # centroids x = 2 and 4; x = 3 is a tie: the first mask
    [[1, 1, 1, 1, 2, 2, 2]]
    """
    masks = np.asarray(masks, bool)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (n, h, w), got {masks.shape}")
    n, h, w = masks.shape
    if centroids is None:
        yy, xx = np.arange(h), np.arange(w)
        area = masks.sum(axis=(1, 2)).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            cy = (masks.sum(axis=2) * yy).sum(axis=1) / area
            cx = (masks.sum(axis=1) * xx).sum(axis=1) / area
        centroids = np.stack([cy, cx], axis=1)
    centroids = np.asarray(centroids, np.float64).reshape(n, 2)
    items = []
    for i in range(n):
        box = mask_box(masks[i])
        if box is None:
            continue
        y0, x0, y1, x1 = box
        items.append((i + 1, y0, x0, masks[i, y0:y1, x0:x1], centroids[i, 0], centroids[i, 1]))
    return paint_instances((slice(0, h), slice(0, w)), items)
