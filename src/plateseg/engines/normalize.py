"""Per-image percentile normalisation of microscopy intensities.

Every engine sees images scaled so that the ``p_low`` percentile maps to 0 and the ``p_high``
percentile maps to 1, per channel, whatever the input type (8-bit, 16-bit, float). Values outside
the percentile range are kept (not clipped) unless asked, so bright nuclei stay brighter than 1.
"""
from __future__ import annotations

import warnings

import numpy as np

__all__ = ["percentile_range", "apply_range", "percentile_normalize"]

_EPS = 1e-12


def _axes(ndim: int, axis) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    if np.isscalar(axis):
        axis = (axis,)
    return tuple(sorted(int(a) % ndim for a in axis))


def percentile_range(image, p_low: float = 1.0, p_high: float = 99.8, axis=(-2, -1),
                     max_pixels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Low and high percentiles of ``image`` over ``axis`` (per channel for the other axes).

    Parameters
    ----------
    image : array_like
        Any numeric array, e.g. ``(h, w)`` or ``(c, h, w)``; uint8, uint16 or float.
    p_low, p_high : float
        Percentiles in [0, 100], ``p_low < p_high``.
    axis : int or tuple of int or None
        Axes reduced over (the spatial axes); the remaining axes are channels.
        ``None`` reduces over all axes.
    max_pixels : int, optional
        If given and a channel has more pixels than this, the percentiles are computed on a
        regular strided subsample of the reduced axes (for large fields; bounded memory).

    Returns
    -------
    lo, hi : numpy.ndarray
        float64 arrays with the reduced axes kept as size 1 (broadcastable against ``image``).
        Non-finite values are ignored; an all-non-finite channel gives ``lo = hi = 0``.

    Examples
    --------
    >>> lo, hi = percentile_range(np.arange(101.0).reshape(1, 101), 0, 100)
    >>> float(lo.ravel()[0]), float(hi.ravel()[0])
    (0.0, 100.0)
    """
    if not 0 <= p_low < p_high <= 100:
        raise ValueError(f"need 0 <= p_low < p_high <= 100, got {p_low}, {p_high}")
    arr = np.asarray(image)
    axes = _axes(arr.ndim, axis)
    if max_pixels is not None:
        n = int(np.prod([arr.shape[a] for a in axes])) if axes else 1
        if n > max_pixels:
            step = int(np.ceil((n / max_pixels) ** (1.0 / len(axes))))
            idx = tuple(slice(None, None, step) if a in axes else slice(None) for a in range(arr.ndim))
            arr = arr[idx]
    arr = arr.astype(np.float64, copy=False)
    if np.isfinite(arr).all():
        lo, hi = np.percentile(arr, [p_low, p_high], axis=axes, keepdims=True)
    else:
        arr = np.where(np.isfinite(arr), arr, np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN channel
            lo, hi = np.nanpercentile(arr, [p_low, p_high], axis=axes, keepdims=True)
        lo = np.nan_to_num(lo, nan=0.0)
        hi = np.nan_to_num(hi, nan=0.0)
    return lo, hi


def apply_range(image, lo, hi, clip: bool = False) -> np.ndarray:
    """Scale ``image`` so that ``lo`` maps to 0 and ``hi`` to 1, as float32.

    Channels whose range is empty (``hi - lo`` ~ 0, a constant image) become all zeros.
    Non-finite input values become 0.

    Parameters
    ----------
    image : array_like
        Input array.
    lo, hi : array_like
        Broadcastable against ``image`` (e.g. from :func:`percentile_range`).
    clip : bool
        Clip the result to [0, 1].

    Returns
    -------
    numpy.ndarray
        float32 array of the shape of ``image``.

    Examples
    --------
    >>> apply_range(np.array([0, 5, 10], np.uint8), 0.0, 10.0).tolist()
    [0.0, 0.5, 1.0]
    """
    x = np.asarray(image).astype(np.float64, copy=False)
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    span = hi - lo
    flat = ~(span > _EPS * np.maximum(1.0, np.abs(hi)))
    scale = np.where(flat, 0.0, 1.0 / np.where(flat, 1.0, span))
    out = (x - lo) * scale
    out = np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
    if clip:
        np.clip(out, 0.0, 1.0, out=out)
    return out.astype(np.float32)


def percentile_normalize(image, p_low: float = 1.0, p_high: float = 99.8, axis=(-2, -1),
                         clip: bool = False) -> np.ndarray:
    """Per-channel percentile normalisation to float32.

    ``out = (image - P_low) / (P_high - P_low)`` where the percentiles are computed per channel
    over ``axis``. Works for uint8, uint16, signed and float input; a constant channel gives zeros.

    Parameters
    ----------
    image : array_like
        ``(h, w)`` or ``(c, h, w)`` (or any array; see ``axis``).
    p_low, p_high : float
        Percentiles mapped to 0 and 1.
    axis : int or tuple of int or None
        Axes over which the percentiles are computed; default the last two (spatial) axes,
        so every leading index (channel) is normalised on its own.
    clip : bool
        Clip to [0, 1].

    Returns
    -------
    numpy.ndarray
        float32 array, same shape as ``image``.

    Examples
    --------
    >>> img = np.stack([np.arange(16, dtype=np.uint16).reshape(4, 4) * 1000,
    ...                 np.full((4, 4), 7, np.uint16)])
    >>> out = percentile_normalize(img, 0, 100)
    >>> out.dtype, float(out[0].min()), float(out[0].max()), float(np.abs(out[1]).max())
    (dtype('float32'), 0.0, 1.0, 0.0)
    """
    lo, hi = percentile_range(image, p_low, p_high, axis=axis)
    return apply_range(image, lo, hi, clip=clip)
