"""Whole cells grown from their nuclei: CellProfiler IdentifySecondaryObjects (Propagation) as a baseline.

Every nucleus seeds one cell with the nucleus's label. Cells grow on the cell stain inside a threshold mask
(Li's minimum cross-entropy -- CellProfiler's default -- or Otsu, times a correction factor) by a compact
watershed: a pixel joins the seed that reaches it with the lowest cost, the cost mixing the image with the
distance travelled, weighted by ``regularization`` -- Propagation's lambda: 0 follows the image only, large
values give Voronoi cells of the nuclei. The image is the stain's dark ridges (``ridge``: the membranes or
dim lines where touching cells meet), the inverted stain (``intensity``: cells meet at its valleys,
CellProfiler's "Watershed - Image") or its Sobel gradient (``gradient``: at edges, "Watershed - Gradient").
No cell reaches farther than ``max_distance`` pixels from its own nucleus, and a nucleus outside the mask
keeps a cell: its nucleus.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage import filters, segmentation

from plateseg.segment.threshold import THRESHOLDS

__all__ = ["propagate_cells", "cytoplasm", "elevation_map", "field_levels"]

ELEVATIONS = ("ridge", "intensity", "gradient")


def _smoothed(image, sigma: float) -> np.ndarray:
    image = np.asarray(image).astype(np.float64)
    return filters.gaussian(image, sigma=sigma, preserve_range=True) if sigma > 0 else image


def _ridge(scaled, ridge_sigma: float) -> np.ndarray:
    return filters.sato(scaled, sigmas=[ridge_sigma], black_ridges=True, mode="reflect")


def field_levels(read_fn, shape, sigma: float = 0.5, threshold: str = "li", elevation: str = "ridge",
                 ridge_sigma: float = 1.0, block_size: int = 2048, halo: int = 64, threads: int = 1) -> dict:
    """The whole field's stain levels :func:`propagate_cells` uses, computed block by block (never the field at once),
    ``threads`` blocks at a time.

    ``lo``, ``hi``: the smoothed stain's range (it is scaled to 0..1 by them); ``threshold``: the global
    threshold of the scaled stain (:func:`plateseg.segment.threshold.field_threshold`); ``ridge_max``: the
    ridge filter's maximum over the field (``elevation="ridge"``, else None).

    Examples
    --------
    >>> img = np.full((40, 60), 10.0); img[5:20, 5:30] = 100; img[25:35, 40:55] = 60
    >>> whole = field_levels(lambda s: img[s], img.shape, block_size=1024)
    >>> blocks = field_levels(lambda s: img[s], img.shape, block_size=16, halo=8)
    >>> all(np.isclose(whole[k], blocks[k]) for k in whole)
    True
    """
    from plateseg.segment.threshold import field_range, field_threshold

    lo, hi = field_range(read_fn, shape, lambda w: _smoothed(w, sigma), block_size, halo, threads)
    span = hi - lo if hi > lo else 1.0

    def scaled(w):
        return (_smoothed(w, sigma) - lo) / span

    levels = {"lo": lo, "hi": hi,
              "threshold": field_threshold(read_fn, shape, threshold, scaled, block_size, halo, threads=threads),
              "ridge_max": None}
    if elevation == "ridge":
        levels["ridge_max"] = field_range(read_fn, shape, lambda w: _ridge(scaled(w), ridge_sigma), block_size, halo,
                                          threads)[1]
    return levels


def elevation_map(scaled: np.ndarray, elevation: str = "ridge", ridge_sigma: float = 1.0,
                  ridge_max: float | None = None) -> np.ndarray:
    """The surface cells flood, from the smoothed stain scaled to 0..1; low where cells grow, high where they meet.

    Parameters
    ----------
    scaled : (H, W) float array
        The smoothed cell stain, scaled to 0..1.
    elevation : {"ridge", "intensity", "gradient"}
        ``ridge``: the Sato filter's dark-ridge response at scale ``ridge_sigma``, divided by its maximum (0..1;
        high on thin dark lines such as the membrane between touching cells, whatever the cells' brightness);
        ``intensity``: ``1 - scaled`` (high in dim valleys); ``gradient``: the Sobel gradient (high at edges).
    ridge_sigma : float
        Scale of the ridge filter, pixels (about the half-width of the dark lines).
    ridge_max : float, optional
        What the ridge response is divided by (a whole field's maximum); default its maximum here.

    Returns
    -------
    (H, W) float array

    Examples
    --------
    A dark line (column 4) between two bright regions is the ridge; the flat parts are not:

    >>> img = np.ones((9, 9)); img[:, 4] = 0.4
    >>> ridge = elevation_map(img, "ridge")
    >>> int(ridge[4].argmax()), float(ridge[4].max()), bool(ridge[4, 0] < 0.05)
    (4, 1.0, True)
    >>> elevation_map(img, "intensity")[4, 3:6].round(2).tolist()
    [0.0, 0.6, 0.0]
    """
    if elevation == "intensity":
        return 1.0 - scaled
    if elevation == "gradient":
        return filters.sobel(scaled)
    if elevation == "ridge":
        ridge = _ridge(scaled, ridge_sigma)
        top = float(ridge.max()) if ridge_max is None else float(ridge_max)
        return ridge / top if top > 0 else ridge
    raise ValueError(f"elevation must be one of {ELEVATIONS}, got {elevation!r}")


def propagate_cells(nuclei: np.ndarray, image: np.ndarray, sigma: float = 0.5, threshold: str = "li",
                    threshold_scale: float = 1.0, regularization: float = 0.01, elevation: str = "ridge",
                    ridge_sigma: float = 1.0, max_distance: float = 50.0, levels: dict | None = None) -> np.ndarray:
    """Cells of the nuclei on one cell-stain image.

    Parameters
    ----------
    nuclei : (H, W) integer array
        Nucleus labels, 0 = background; each becomes the cell of the same label.
    image : (H, W) array
        The cell stain (cytoplasm, membrane or whole-cell marker).
    sigma : float
        Gaussian smoothing of the stain, pixels.
    threshold : {"li", "otsu"}
        Global threshold of the smoothed stain: the mask cells grow in (Li's minimum cross-entropy keeps dim
        cells and the dim rims of cells that Otsu's threshold cuts off when cells vary in brightness).
    threshold_scale : float
        Multiplies the threshold (CellProfiler's threshold correction factor).
    regularization : float
        Weight of the distance against the elevation (0..1): the watershed's compactness.
    elevation : {"ridge", "intensity", "gradient"}
        What the cells flood (:func:`elevation_map`): the stain's dark ridges (cells meet along dark lines),
        the inverted stain (at dark valleys) or its Sobel gradient (at edges).
    ridge_sigma : float
        Scale of the ridge filter (``elevation="ridge"``), pixels.
    max_distance : float
        No cell pixel lies farther than this from its nucleus (pixels).
    levels : dict, optional
        The whole field's stain levels (:func:`field_levels`) when ``image`` is one block of a larger field:
        the range the stain is scaled by, the mask's threshold and the ridge filter's maximum; default those
        of ``image`` itself.

    Returns
    -------
    (H, W) uint32 array
        Cell labels: every cell holds its whole nucleus and has its label.

    Examples
    --------
    Two nuclei (columns 3 and 16) in one bright blob with a dimmer valley at column 12: following the image,
    the cells meet in the valley; with a strong distance weight, half-way between the nuclei.

    >>> img = np.full((5, 20), 100.0); img[:, 12] = 60; img[:, 19] = 0
    >>> nuc = np.zeros((5, 20), int); nuc[2, 3] = 1; nuc[2, 16] = 2
    >>> propagate_cells(nuc, img, sigma=0)[2].tolist()
    [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 0]
    >>> propagate_cells(nuc, img, sigma=0, elevation="intensity", regularization=0.001)[2].tolist()
    [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 0]
    >>> propagate_cells(nuc, img, sigma=0, regularization=10)[2].tolist()
    [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0]
    """
    nuclei = np.asarray(nuclei)
    if nuclei.shape != image.shape:
        raise ValueError(f"nuclei {nuclei.shape} and the cell image {image.shape} differ in shape")
    if elevation not in ELEVATIONS or threshold not in THRESHOLDS:
        raise ValueError(f"elevation must be one of {ELEVATIONS} and threshold one of {tuple(THRESHOLDS)}, got "
                         f"{elevation!r}, {threshold!r}")
    out = np.zeros(nuclei.shape, np.uint32)
    if nuclei.max() == 0:
        return out
    smooth = _smoothed(image, sigma)
    lo, hi = (float(smooth.min()), float(smooth.max())) if levels is None else (levels["lo"], levels["hi"])
    scaled = (smooth - lo) / (hi - lo) if hi > lo else np.zeros_like(smooth)
    if hi > lo:
        t = THRESHOLDS[threshold](scaled) if levels is None else levels["threshold"]
        mask = scaled > t * threshold_scale
    else:
        mask = np.zeros(nuclei.shape, bool)
    mask |= nuclei > 0
    surface = elevation_map(scaled, elevation, ridge_sigma, None if levels is None else levels["ridge_max"])
    cells = segmentation.watershed(surface, markers=nuclei, mask=mask, compactness=regularization)
    # distance cap: a pixel farther than max_distance from its own nucleus leaves its cell
    far = ndi.distance_transform_edt(nuclei == 0) > max_distance  # farther than that from every nucleus
    cells[far] = 0
    for lab, sl in enumerate(ndi.find_objects(cells), start=1):
        if sl is None:
            continue
        grow = int(np.ceil(max_distance))
        box = tuple(slice(max(s.start - grow, 0), s.stop + grow) for s in sl)
        own = ndi.distance_transform_edt(nuclei[box] != lab) > max_distance
        cells[box][own & (cells[box] == lab)] = 0
    out[...] = cells
    return out


def cytoplasm(cells: np.ndarray, nuclei: np.ndarray) -> np.ndarray:
    """The cytoplasm of each cell: the cell minus its nucleus (same label; may be empty).

    Examples
    --------
    >>> cyto = cytoplasm(np.array([[1, 1, 2]]), np.array([[1, 0, 2]]))
    >>> cyto.tolist()
    [[0, 1, 0]]
    """
    out = np.asarray(cells).astype(np.uint32, copy=True)
    out[np.asarray(nuclei) > 0] = 0
    return out
