"""Haralick texture of one object: grey-level co-occurrence inside its mask (CellProfiler MeasureTexture).

The object's pixels are quantised to ``levels`` grey levels between its own minimum and maximum (so the
texture does not repeat the intensity features), pixels outside the mask are a level of their own that is
dropped from the matrix, and the co-occurrence matrices of the four directions at ``distance`` pixels
(symmetric) are summarised one by one and averaged (CellProfiler reports each direction; a direction
without a pixel pair inside a thin object is left out).
"""
from __future__ import annotations

import numpy as np
from skimage.feature import graycomatrix, graycoprops

__all__ = ["TEXTURE_FEATURES", "glcm_features"]

# scikit-image graycoprops name -> CellProfiler Texture_* name (homogeneity is CellProfiler's
# InverseDifferenceMoment: sum P / (1 + (i - j)^2))
TEXTURE_FEATURES = {
    "ASM": "AngularSecondMoment",
    "contrast": "Contrast",
    "correlation": "Correlation",
    "homogeneity": "InverseDifferenceMoment",
    "entropy": "Entropy",
}
_ANGLES = (0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)


def glcm_features(image: np.ndarray, mask: np.ndarray, distance: int = 3, levels: int = 16) -> dict[str, float]:
    """Texture features of the pixels of ``image`` under ``mask``.

    Parameters
    ----------
    image : (H, W) array
        Intensities (a crop around the object is enough).
    mask : (H, W) bool array
        The object.
    distance : int
        Pixel offset of the co-occurring pairs.
    levels : int
        Grey levels the object's intensity range is cut into.

    Returns
    -------
    dict
        CellProfiler names (:data:`TEXTURE_FEATURES` values) -> mean over the four directions; NaN for an
        object with no pixel pair ``distance`` apart in any direction (too small). A flat object has one level: contrast 0,
        correlation 1.

    Examples
    --------
    >>> stripes = np.tile([0, 0, 0, 9, 9, 9], (12, 2)).astype(float)   # period 6 along x
    >>> f = glcm_features(stripes, np.ones_like(stripes, bool), distance=3, levels=2)
    >>> round(f["Contrast"], 3), round(f["Correlation"], 3)
    (0.55, -0.1)

    Along x every pair is of the other level (contrast 1, correlation -1), along y of the same (0, 1), and
    the diagonals (offsets rounded to 2 px, 60 % of pairs differ) have contrast 0.6 and correlation -0.2.
    >>> row = np.zeros_like(stripes, bool); row[5] = True   # a one-pixel line: only the x pairs
    >>> glcm_features(stripes, row, distance=3, levels=2)["Contrast"]
    1.0
    >>> bool(np.isnan(glcm_features(np.ones((2, 2)), np.ones((2, 2), bool))["Contrast"]))
    True
    """
    vals = image[mask].astype(np.float64)
    lo, hi = (vals.min(), vals.max()) if vals.size else (0.0, 0.0)
    q = np.zeros(image.shape, np.uint16)
    scaled = (image.astype(np.float64) - lo) / (hi - lo) * levels if hi > lo else np.zeros(image.shape)
    q[mask] = 1 + np.minimum(scaled[mask].astype(np.int64), levels - 1)
    P = graycomatrix(q, [distance], _ANGLES, levels=levels + 1, symmetric=True)[1:, 1:].astype(np.float64)
    sums = P.sum(axis=(0, 1))
    seen = sums[0] > 0  # the directions with at least one pair inside the object
    if not seen.any():
        return {name: float("nan") for name in TEXTURE_FEATURES.values()}
    out = {}
    for prop, name in TEXTURE_FEATURES.items():
        v = graycoprops(P[..., seen] / sums[:, seen], prop)[0]
        if prop == "correlation":  # one grey level: scikit-image gives 1 (perfectly correlated), as CellProfiler
            v = np.where(np.isfinite(v), v, 1.0)
        out[name] = float(v.mean())
    return out
