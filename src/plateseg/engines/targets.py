"""Per-pixel training targets derived from instance labels.

The U-Net engine predicts three maps, each trained against a target made here from the instance
labels (0 = background, 1..N = objects):

* foreground: 1 on objects (:func:`foreground_target`);
* boundary between touching objects: dilate every object and keep the pixels claimed by at least
  two of them (seed 004; :func:`boundary_target`);
* centre heatmap: a Gaussian of peak exactly 1 at every object centre, the CenterNet target
  (seed 000; :func:`centre_heatmap`).

Optionally, the original U-Net's border weight map (w0 = 10, sigma = 5; seed 003) weights the
foreground loss so that thin gaps between touching nuclei count (:func:`unet_weight_map`).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "foreground_target",
    "boundary_target",
    "object_centres",
    "render_heatmap",
    "centre_heatmap",
    "unet_weight_map",
]


def _disk(radius: float) -> np.ndarray:
    r = int(np.floor(radius))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (yy * yy + xx * xx) <= radius * radius


def foreground_target(labels) -> np.ndarray:
    """1.0 on object pixels, 0.0 on background (float32).

    Examples
    --------
    >>> foreground_target(np.array([[0, 3], [1, 0]])).tolist()
    [[0.0, 1.0], [1.0, 0.0]]
    """
    return (np.asarray(labels) > 0).astype(np.float32)


def boundary_target(labels, width: float = 2.0) -> np.ndarray:
    """Pixels claimed by two or more objects after dilating each object by a disk of ``width``.

    This marks the contact zone between touching (or nearly touching) objects: the gap between
    them and a band of about ``width`` pixels on both sides. Isolated objects get no boundary.

    Parameters
    ----------
    labels : array_like of int
        ``(h, w)`` instance labels, 0 = background.
    width : float
        Dilation radius in pixels (a disk footprint).

    Returns
    -------
    numpy.ndarray
        float32 ``(h, w)`` of 0/1.

    Notes
    -----
    A pixel lies in the dilation of object ``i`` iff object ``i`` has a pixel in the disk around
    it, so it is claimed by two objects iff the largest and the smallest non-zero label in the
    disk differ: one maximum and one minimum filter, exact and independent of the object count.

    Examples
    --------
    >>> lab = np.zeros((5, 8), int); lab[1:4, 1:4] = 1; lab[1:4, 5:8] = 2   # 1-pixel gap
    >>> boundary_target(lab, width=2)[2].astype(int).tolist()
    [0, 0, 0, 1, 1, 1, 0, 0]
    """
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError("labels must be 2-D")
    if width <= 0:
        return np.zeros(lab.shape, np.float32)
    lab = lab.astype(np.int64, copy=False)
    fp = _disk(width)
    big = int(lab.max()) + 1
    mx = ndi.maximum_filter(lab, footprint=fp, mode="constant", cval=0)
    mn = ndi.minimum_filter(np.where(lab > 0, lab, big), footprint=fp, mode="constant", cval=big)
    return ((mx > 0) & (mn < big) & (mx != mn)).astype(np.float32)


def object_centres(labels) -> tuple[np.ndarray, np.ndarray]:
    """Centre pixel of every object: its centroid, moved onto the object if it falls outside.

    For a non-convex object whose centroid is not one of its pixels, the object pixel nearest
    to the centroid is used, so every centre lies on its object.

    Parameters
    ----------
    labels : array_like of int
        ``(h, w)`` instance labels.

    Returns
    -------
    ids : numpy.ndarray
        Label ids, ascending.
    centres : numpy.ndarray
        int64 ``(n, 2)`` pixel coordinates ``(y, x)``.

    Examples
    --------
    >>> lab = np.zeros((5, 5), int); lab[1:4, 1:4] = 7
    >>> ids, c = object_centres(lab); ids.tolist(), c.tolist()
    ([7], [[2, 2]])
    """
    lab = np.asarray(labels)
    ids, centres = [], []
    for i, sl in enumerate(ndi.find_objects(lab.astype(np.int64, copy=False)), start=1):
        if sl is None:
            continue
        yy, xx = np.nonzero(lab[sl] == i)
        cy, cx = yy.mean(), xx.mean()
        py, px = int(np.floor(cy + 0.5)), int(np.floor(cx + 0.5))
        inside = 0 <= py < lab[sl].shape[0] and 0 <= px < lab[sl].shape[1] and lab[sl][py, px] == i
        if not inside:
            k = int(np.argmin((yy - cy) ** 2 + (xx - cx) ** 2))
            py, px = int(yy[k]), int(xx[k])
        ids.append(i)
        centres.append((py + sl[0].start, px + sl[1].start))
    return np.asarray(ids, np.int64), np.asarray(centres, np.int64).reshape(-1, 2)


def render_heatmap(shape, centres, sigma) -> np.ndarray:
    """Maximum over Gaussians ``exp(-d^2 / (2 sigma^2))`` centred on integer pixel ``centres``.

    Each Gaussian is exactly 1 at its centre pixel (the positives of the CenterNet focal loss);
    centres may lie outside ``shape`` (their tails still count).

    Parameters
    ----------
    shape : tuple of int
        ``(h, w)``.
    centres : array_like
        ``(n, 2)`` ``(y, x)``; rounded to the nearest pixel.
    sigma : float or array_like
        One sigma for all, or one per centre (pixels).

    Returns
    -------
    numpy.ndarray
        float32 ``(h, w)`` in [0, 1].

    Examples
    --------
    >>> hm = render_heatmap((5, 5), [[2, 2]], 1.0)
    >>> float(hm[2, 2]), round(float(hm[2, 3]), 4)
    (1.0, 0.6065)
    """
    h, w = (int(s) for s in shape[-2:])
    out = np.zeros((h, w), np.float32)
    centres = np.floor(np.asarray(centres, np.float64).reshape(-1, 2) + 0.5).astype(np.int64)
    sig = np.broadcast_to(np.asarray(sigma, np.float64), (len(centres),))
    for (cy, cx), s in zip(centres, sig):
        r = int(np.ceil(3 * s))
        y0, y1 = max(cy - r, 0), min(cy + r + 1, h)
        x0, x1 = max(cx - r, 0), min(cx + r + 1, w)
        if y0 >= y1 or x0 >= x1:
            continue
        yy = (np.arange(y0, y1) - cy)[:, None]
        xx = (np.arange(x0, x1) - cx)[None, :]
        g = np.exp(-(yy * yy + xx * xx) / (2.0 * s * s)).astype(np.float32)
        np.maximum(out[y0:y1, x0:x1], g, out=out[y0:y1, x0:x1])
    return out


def centre_heatmap(labels, sigma: float = 2.0, sigma_relative: float | None = None) -> np.ndarray:
    """CenterNet-style heatmap: a Gaussian of peak 1 at each object centre (max where they meet).

    Parameters
    ----------
    labels : array_like of int
        ``(h, w)`` instance labels.
    sigma : float
        Gaussian sigma in pixels (the minimum sigma if ``sigma_relative`` is given).
    sigma_relative : float, optional
        If given, each object's sigma is ``max(sigma, sigma_relative * r)`` with ``r`` its
        equivalent radius ``sqrt(area / pi)`` (size-adaptive, as CenterNet's radius rule).

    Returns
    -------
    numpy.ndarray
        float32 ``(h, w)`` in [0, 1], exactly 1 at the centres (see :func:`object_centres`).

    Examples
    --------
    >>> lab = np.zeros((7, 12), int); lab[1:6, 1:6] = 1; lab[1:6, 6:11] = 2
    >>> hm = centre_heatmap(lab, sigma=1.0)
    >>> np.argwhere(hm == 1).tolist()
    [[3, 3], [3, 8]]
    """
    lab = np.asarray(labels)
    ids, centres = object_centres(lab)
    if sigma_relative is not None and len(ids):
        area = ndi.sum_labels(np.ones(lab.shape), lab, ids)
        sig = np.maximum(sigma, sigma_relative * np.sqrt(area / np.pi))
    else:
        sig = sigma
    return render_heatmap(lab.shape, centres, sig)


def unet_weight_map(labels, w0: float = 10.0, sigma: float = 5.0,
                    class_balance: bool = True) -> np.ndarray:
    """The original U-Net loss weight map (Ronneberger et al. 2015; seed 003).

    ``w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))`` where ``d1, d2`` are the
    distances to the nearest and second-nearest object. The border term is applied to
    background pixels (the gaps between objects, which the loss should not ignore), as most
    implementations do.

    Parameters
    ----------
    labels : array_like of int
        ``(h, w)`` instance labels.
    w0, sigma : float
        Border weight and its distance scale (pixels).
    class_balance : bool
        ``w_c = N / (2 N_class)`` for each class (mean 1 over the image) when both classes
        are present; otherwise ``w_c = 1``.

    Returns
    -------
    numpy.ndarray
        float32 ``(h, w)``, >= ``min(w_c)``.

    Notes
    -----
    Distances are computed per object in its bounding box grown by
    ``sigma * sqrt(2 ln(1000 w0))`` pixels, beyond which the border term is below 1e-3.

    Examples
    --------
    >>> lab = np.zeros((5, 9), int); lab[1:4, 1:4] = 1; lab[1:4, 5:8] = 2
    >>> w = unet_weight_map(lab, class_balance=False)
    >>> bool(w[2, 4] > 9), float(w[2, 2])
    (True, 1.0)
    """
    lab = np.asarray(labels)
    h, w = lab.shape
    fg = lab > 0
    out = np.ones((h, w), np.float64)
    if class_balance:
        n_fg = int(fg.sum())
        n_bg = fg.size - n_fg
        if n_fg and n_bg:
            out[fg] = fg.size / (2.0 * n_fg)
            out[~fg] = fg.size / (2.0 * n_bg)
    d1 = np.full((h, w), np.inf)
    d2 = np.full((h, w), np.inf)
    reach = int(np.ceil(sigma * np.sqrt(2.0 * np.log(1000.0 * max(w0, 1e-3)))))
    n_obj = 0
    for i, sl in enumerate(ndi.find_objects(lab.astype(np.int64, copy=False)), start=1):
        if sl is None:
            continue
        n_obj += 1
        ys = slice(max(sl[0].start - reach, 0), min(sl[0].stop + reach, h))
        xs = slice(max(sl[1].start - reach, 0), min(sl[1].stop + reach, w))
        d = ndi.distance_transform_edt(lab[ys, xs] != i)
        a1, a2 = d1[ys, xs], d2[ys, xs]
        d2[ys, xs] = np.minimum(a2, np.maximum(a1, d))
        d1[ys, xs] = np.minimum(a1, d)
    if n_obj >= 2:
        with np.errstate(over="ignore", invalid="ignore"):
            border = w0 * np.exp(-((d1 + d2) ** 2) / (2.0 * sigma * sigma))
        border = np.nan_to_num(border, nan=0.0)
        out[~fg] += border[~fg]
    return out.astype(np.float32)
