"""Synthetic fluorescence microscopy of nuclei, with ground truth.

Two uses:

* the demo plate the pipeline's default config runs on (:func:`write_demo_run`), with a plate
  pattern -- nucleus density rises across columns, the second marker's intensity rises down the
  rows -- so that per-well counts and intensities differ visibly;
* annotated training images (:func:`write_training_set`), laid out like ``data/dsb2018``.

One field is made by :func:`synth_field`: nuclei are ellipses with a smooth random boundary
perturbation, varied in size, shape and brightness, with chromatin texture and bright
nucleolus-like spots; a fraction of them sit in clusters where they touch or overlap. The
image model is: fluorescence (overlaps add) + background, times an uneven illumination
(vignetting and a gradient), blurred by a Gaussian PSF, then Poisson shot noise, a camera
offset and Gaussian read noise, stored as 16-bit counts.

Ground truth follows the painter's rule: where nuclei overlap, the pixel belongs to the nucleus
drawn last. Nuclei that would be left with less than half of their area visible, with a visible
part under a minimum area, or with a visible part split into pieces are removed before the image
is rendered (so no unlabelled nucleus is left in the image), and labels are 1..N.

Everything is deterministic: the same seed gives byte-identical arrays and files.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
from scipy import ndimage

from plateseg.io.files import atomic_path, write_table
from plateseg.io.naming import row_index
from plateseg.labels import dense_labels, remove_small

__all__ = ["cell_channel", "marker_channel", "synth_field", "write_demo_run", "write_training_set"]

logger = logging.getLogger(__name__)

# Nuclei per 512x512 field at density 1.0.
_NUCLEI_PER_FIELD = 60.0
_REF_AREA = 512.0 * 512.0

# Photometry (photo-electrons per pixel at brightness 1; camera gain 1 ADU per electron).
_DNA_PHOTONS = 1500.0
_MARKER_PHOTONS = 250.0
_BACKGROUND = (120.0, 100.0)
_CAMERA_OFFSET = 100.0
_READ_NOISE = 2.5

# Physical sizes in micrometres (converted to pixels with ``pixel_size``).
_PSF_SIGMA_UM = (0.6, 0.7)
_TEXTURE_SIGMA_UM = 0.8
_HALO_UM = 2.0

_HARMONICS = np.arange(2, 6)  # boundary perturbation: cos/sin of k*phi, k = 2..5
_GAP_PX = 3.0  # minimum gap between isolated nuclei


class _Nucleus:
    """Geometry and appearance of one nucleus (internal)."""

    __slots__ = (
        "cy", "cx", "a", "b", "theta", "coef", "extent", "dna", "marker", "texture",
        "spots", "sl", "rho", "edge_r", "dist", "mask", "area",
    )

    def radius_towards(self, omega: float) -> float:
        """Distance from the centre to the boundary in world direction ``omega``."""
        psi = omega - self.theta
        c, s = math.cos(psi), math.sin(psi)
        r_ell = self.a * self.b / math.hypot(self.b * c, self.a * s)
        phi = math.atan2(s / self.b, c / self.a)
        return r_ell * _boundary(self.coef, np.asarray(phi)).item()


def _boundary(coef: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Relative boundary radius R(phi) = 1 + sum_k c_k cos(k phi) + s_k sin(k phi)."""
    r = np.ones_like(phi, dtype=np.float64)
    for k, (c, s) in zip(_HARMONICS, coef):
        r += c * np.cos(k * phi) + s * np.sin(k * phi)
    return r


def _draw_nucleus(rng: np.random.Generator, radius_range: tuple[float, float]) -> _Nucleus:
    """Draw the shape and appearance of a nucleus (not yet placed)."""
    nuc = _Nucleus()
    r = rng.uniform(*radius_range)
    dna = rng.lognormal(0.0, 0.3)
    texture = rng.uniform(0.15, 0.35)
    if rng.random() < 0.05:  # condensed (mitotic/apoptotic-like): small, bright, smooth
        r = max(radius_range[0] * 0.8, r * 0.7)
        dna *= 2.5
        texture *= 0.4
    aspect = rng.uniform(1.0, 1.6)
    nuc.a = r * math.sqrt(aspect)
    nuc.b = r / math.sqrt(aspect)
    nuc.theta = rng.uniform(0.0, math.pi)
    amp = rng.uniform(0.02, 0.07)
    nuc.coef = rng.normal(0.0, amp, size=(len(_HARMONICS), 2)) / _HARMONICS[:, None]
    nuc.extent = nuc.a * (1.0 + np.abs(nuc.coef).sum())
    nuc.dna = dna
    nuc.marker = rng.lognormal(0.0, 0.45)
    nuc.texture = texture
    n_spots = int(rng.integers(0, 4))
    # (relative radius, angle, sigma in um, relative amplitude) per nucleolus-like spot
    nuc.spots = [
        (0.55 * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi), rng.uniform(0.4, 0.9),
         rng.uniform(0.3, 0.8))
        for _ in range(n_spots)
    ]
    return nuc


def _place(rng, shape, margin, n, radius_range, cluster_fraction) -> list[_Nucleus]:
    """Place ``n`` nuclei: clustered ones touching/overlapping a neighbour, the rest isolated.

    Centres fall in the field grown by ``margin`` on each side, so nuclei are cut by the border.
    """
    H, W = shape
    n_clustered = int(rng.binomial(n, min(max(cluster_fraction, 0.0), 1.0))) if n else 0
    sizes = []
    while sum(sizes) < n_clustered:
        sizes.append(int(rng.choice([2, 2, 2, 3, 3, 4])))
    if sizes:
        excess = sum(sizes) - n_clustered
        sizes[-1] -= excess
        if sizes[-1] < 2:
            sizes.pop()
    n_single = n - sum(sizes)

    placed: list[_Nucleus] = []
    cy = np.empty(0)
    cx = np.empty(0)
    ext = np.empty(0)

    def add(nuc):
        nonlocal cy, cx, ext
        placed.append(nuc)
        cy = np.append(cy, nuc.cy)
        cx = np.append(cx, nuc.cx)
        ext = np.append(ext, nuc.extent)

    def place_isolated(nuc, tries=100) -> bool:
        for _ in range(tries):
            y, x = rng.uniform(-margin, H + margin), rng.uniform(-margin, W + margin)
            if ext.size == 0 or np.all(np.hypot(cy - y, cx - x) >= ext + nuc.extent + _GAP_PX):
                nuc.cy, nuc.cx = y, x
                return True
        return False

    for size in sizes:
        seed = _draw_nucleus(rng, radius_range)
        if not place_isolated(seed):
            continue
        add(seed)
        members = [seed]
        for _ in range(size - 1):
            nuc = _draw_nucleus(rng, radius_range)
            for _ in range(30):
                anchor = members[int(rng.integers(len(members)))]
                omega = rng.uniform(0, 2 * math.pi)
                # mostly touching or slightly overlapping, sometimes overlapping deeply
                depth = rng.uniform(0.85, 0.98) if rng.random() < 0.7 else rng.uniform(0.55, 0.85)
                d = (anchor.radius_towards(omega) + nuc.radius_towards(omega + math.pi)) * depth
                y, x = anchor.cy + d * math.sin(omega), anchor.cx + d * math.cos(omega)
                if not (-margin <= y < H + margin and -margin <= x < W + margin):
                    continue
                dist = np.hypot(cy - y, cx - x)
                r_eq = np.array([math.sqrt(p.a * p.b) for p in placed])
                others = np.array([p is not anchor for p in placed])
                # no deep overlap with anything else; neighbours other than the anchor may touch
                if np.all(dist[others] >= 0.9 * (r_eq[others] + math.sqrt(nuc.a * nuc.b))):
                    nuc.cy, nuc.cx = y, x
                    add(nuc)
                    members.append(nuc)
                    break
    for _ in range(n_single):
        nuc = _draw_nucleus(rng, radius_range)
        if place_isolated(nuc):
            add(nuc)
    if len(placed) < n:
        logger.debug("placed %d of %d nuclei (field too crowded)", len(placed), n)
    return placed


def _rasterise(nuc: _Nucleus, shape, halo_px: float) -> None:
    """Compute the nucleus geometry on its bounding box (plus halo), clipped to the image."""
    H, W = shape
    m = nuc.extent + halo_px + 2.0
    y0, y1 = max(int(math.floor(nuc.cy - m)), 0), min(int(math.ceil(nuc.cy + m)) + 1, H)
    x0, x1 = max(int(math.floor(nuc.cx - m)), 0), min(int(math.ceil(nuc.cx + m)) + 1, W)
    nuc.sl = (slice(y0, y1), slice(x0, x1))
    dy = np.arange(y0, y1, dtype=np.float64)[:, None] - nuc.cy
    dx = np.arange(x0, x1, dtype=np.float64)[None, :] - nuc.cx
    c, s = math.cos(nuc.theta), math.sin(nuc.theta)
    u = (dx * c + dy * s) / nuc.a
    v = (-dx * s + dy * c) / nuc.b
    rho = np.hypot(u, v)
    phi = np.arctan2(v, u)
    edge_r = _boundary(nuc.coef, phi)
    # approximate signed distance to the boundary in pixels (negative inside)
    scale = np.hypot(nuc.a * np.cos(phi), nuc.b * np.sin(phi))
    nuc.rho = rho
    nuc.edge_r = edge_r
    nuc.dist = (rho - edge_r) * scale
    nuc.mask = rho <= edge_r
    nuc.area = int(nuc.mask.sum())


def _paint(nuclei, shape) -> np.ndarray:
    labels = np.zeros(shape, dtype=np.uint32)
    for i, nuc in enumerate(nuclei, start=1):
        labels[nuc.sl][nuc.mask] = i
    return labels


def _resolve_occlusion(nuclei, shape, min_area: float):
    """Drop nuclei mostly hidden, too small or split by later ones; return (kept, labels)."""
    kept = [n for n in nuclei if n.area >= min_area]
    while True:
        labels = _paint(kept, shape)
        visible = np.bincount(labels.ravel(), minlength=len(kept) + 1)
        keep = []
        for i, nuc in enumerate(kept, start=1):
            vis = visible[i]
            ok = vis >= min_area and vis >= 0.5 * nuc.area
            if ok and vis < nuc.area:  # partly hidden: the visible part must be one piece
                _, n_parts = ndimage.label(labels[nuc.sl] == i)
                ok = n_parts == 1
            keep.append(ok)
        if all(keep):
            return kept, labels
        kept = [n for n, k in zip(kept, keep) if k]


def _smooth_noise(rng, shape, sigma) -> np.ndarray:
    t = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return t / (t.std() + 1e-12)


def _illumination(rng, shape) -> np.ndarray:
    """Smooth multiplicative illumination: off-centre vignetting times a linear gradient."""
    H, W = shape
    y = (np.arange(H)[:, None] + 0.5) / H - 0.5
    x = (np.arange(W)[None, :] + 0.5) / W - 0.5
    oy, ox = rng.uniform(-0.15, 0.15, size=2)
    vig = rng.uniform(0.15, 0.35)
    ang = rng.uniform(0, 2 * math.pi)
    grad = rng.uniform(-0.12, 0.12)
    r2 = ((y - oy) ** 2 + (x - ox) ** 2) / 0.5
    return (1.0 - vig * r2) * (1.0 + grad * (x * math.cos(ang) + y * math.sin(ang)))


def synth_field(
    rng,
    shape=(512, 512),
    density=1.0,
    marker_level=1.0,
    radius_range=(6, 14),
    cluster_fraction=0.3,
    pixel_size=0.65,
    *,
    brightness=1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Render one synthetic two-channel field of nuclei and its instance labels.

    Parameters
    ----------
    rng : numpy.random.Generator or int or None
        Source of randomness, or a seed for :func:`numpy.random.default_rng`.
    shape : tuple of int
        Field size ``(H, W)`` in pixels.
    density : float
        Scales the number of nuclei: 1.0 gives on average 60 nuclei per 512x512 pixels
        (Poisson-distributed, scaled with the field area). Very high densities may place fewer.
    marker_level : float
        Mean intensity of the second marker (channel 2) relative to level 1.0.
    radius_range : tuple of float
        Range of the nuclei's equivalent radii, in pixels.
    cluster_fraction : float
        Expected fraction of nuclei placed in clusters of 2-4 that touch or overlap.
    pixel_size : float
        Micrometres per pixel. Sets the size in pixels of the optical blur (PSF), the chromatin
        texture, nucleolus-like spots and the cytoplasmic halo of channel 2.
    brightness : float, keyword-only
        Scales all photon counts (signal and background), like exposure time: lower values give
        dimmer, noisier images.

    Returns
    -------
    image : ndarray of uint16, shape (2, H, W)
        Channel 0 is the nuclear (DNA) stain; channel 1 a marker present in the nucleus with a
        weaker perinuclear halo, whose per-nucleus intensity scales with ``marker_level``.
        Counts include a camera offset of about 100.
    labels : ndarray of uint32, shape (H, W)
        0 is background, nuclei are 1..N. Where nuclei overlap, the one drawn last owns the
        pixels; nuclei left with < 50 % of their area, a tiny or a split visible part are removed
        (and not rendered).

    Examples
    --------
    >>> import numpy as np
    >>> image, labels = synth_field(np.random.default_rng(0), shape=(128, 128))
    >>> image.shape, image.dtype, labels.dtype
    ((2, 128, 128), dtype('uint16'), dtype('uint32'))
    >>> bool(np.array_equal(np.unique(labels), np.arange(labels.max() + 1)))
    True
    """
    rng = np.random.default_rng(rng)
    H, W = (int(s) for s in shape)
    shape = (H, W)
    radius_range = (float(radius_range[0]), float(radius_range[1]))
    if not 0 < radius_range[0] <= radius_range[1]:
        raise ValueError(f"radius_range must be 0 < min <= max, got {radius_range}")
    if density < 0 or marker_level < 0 or brightness <= 0 or pixel_size <= 0:
        raise ValueError("density and marker_level must be >= 0, brightness and pixel_size > 0")

    margin = radius_range[1]
    n = int(rng.poisson(_NUCLEI_PER_FIELD * density * (H + margin) * (W + margin) / _REF_AREA))
    nuclei = _place(rng, shape, margin, n, radius_range, cluster_fraction)
    halo_px = 3.0 * _HALO_UM / pixel_size
    for nuc in nuclei:
        _rasterise(nuc, shape, halo_px)
    min_area = 0.3 * math.pi * radius_range[0] ** 2
    nuclei, labels = _resolve_occlusion(nuclei, shape, min_area)

    tex1 = _smooth_noise(rng, shape, _TEXTURE_SIGMA_UM / pixel_size)
    tex2 = _smooth_noise(rng, shape, _TEXTURE_SIGMA_UM / pixel_size)
    sig1 = np.zeros(shape)
    sig2 = np.zeros(shape)
    halo_w = _HALO_UM / pixel_size
    for nuc in nuclei:
        sl = nuc.sl
        # anti-aliased inside weight, ~1 px soft edge
        inside = np.clip(0.5 - nuc.dist, 0.0, 1.0)
        rel = np.minimum(nuc.rho / nuc.edge_r, 1.0)
        dome = 0.85 + 0.15 * (1.0 - rel**2)
        dna = dome * np.clip(1.0 + nuc.texture * tex1[sl], 0.0, None)
        if nuc.spots:
            yy = np.arange(sl[0].start, sl[0].stop)[:, None]
            xx = np.arange(sl[1].start, sl[1].stop)[None, :]
            for rr, ang, sig_um, amp in nuc.spots:
                sy = nuc.cy + rr * nuc.b * math.sin(ang)
                sx = nuc.cx + rr * nuc.a * math.cos(ang)
                sig = sig_um / pixel_size
                dna = dna + amp * np.exp(-((yy - sy) ** 2 + (xx - sx) ** 2) / (2 * sig * sig))
        sig1[sl] += (_DNA_PHOTONS * nuc.dna) * inside * dna
        halo = 0.3 * np.exp(-np.maximum(nuc.dist, 0.0) / halo_w) * (1.0 - inside)
        marker = inside * np.clip(1.0 + 0.2 * tex2[sl], 0.0, None) + halo
        sig2[sl] += (_MARKER_PHOTONS * marker_level * nuc.marker) * marker

    illum = _illumination(rng, shape)
    image = np.empty((2, H, W), dtype=np.uint16)
    for c, (sig, bg, psf_um) in enumerate(zip((sig1, sig2), _BACKGROUND, _PSF_SIGMA_UM)):
        expected = ndimage.gaussian_filter((sig + bg) * illum * brightness, psf_um / pixel_size)
        counts = rng.poisson(np.maximum(expected, 0.0)).astype(np.float64)
        counts += _CAMERA_OFFSET + rng.normal(0.0, _READ_NOISE, size=shape)
        image[c] = np.clip(np.rint(counts), 0, 65535).astype(np.uint16)
    return image, labels


# ----------------------------------------------------------------------------------------------
# writing


def marker_channel(labels, level: float, rng: np.random.Generator, background: float = 200.0) -> np.ndarray:
    """A synthetic second channel for real nuclei: a nuclear marker whose per-nucleus intensity is
    lognormal around ``level`` (x 1000 counts), blurred, on a flat background with Poisson noise, uint16.

    Used to give a real DNA image (e.g. a DSB2018 field of the real-data demo) a marker channel, so that
    the marker columns of the tables exist and show a plate pattern.

    Examples
    --------
    >>> lab = np.zeros((32, 32), np.int32); lab[4:12, 4:12] = 1; lab[20:28, 20:28] = 2
    >>> img = marker_channel(lab, 2.0, np.random.default_rng(0))
    >>> img.dtype.name, bool(img[6:10, 6:10].mean() > 4 * img[14:18, 0:4].mean())
    ('uint16', True)
    """
    from scipy import ndimage as ndi

    labels = np.asarray(labels)
    n = int(labels.max())
    per_object = np.concatenate([[0.0], level * 1000.0 * rng.lognormal(0.0, 0.4, size=n)])
    signal = ndi.gaussian_filter(per_object[labels], 1.0) + background
    return np.clip(rng.poisson(signal), 0, 65535).astype(np.uint16)


def cell_channel(nuclei, rng: np.random.Generator, extent=(6.0, 16.0), photons: float = 400.0,
                 background: float = 80.0) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic cytoplasm stain around given nuclei, and its cell labels (ground truth of ``cells``).

    Each nucleus gets a cell reaching ``extent`` pixels (uniform per cell) beyond it; where cells would overlap, a
    pixel goes to the cell it lies deepest inside (additively weighted Voronoi of the nuclei). Each cell has its
    own stain level (lognormal) and a smooth texture, its nucleus is dim (the stain stays in the cytoplasm) and
    its rim is darker (the inner boundary of every cell: the membrane between touching cells and the cell's edge
    towards the background alike), then the image is blurred and photon noise added.

    Returns
    -------
    image : (H, W) uint16
    cells : (H, W) uint32
        Cell ``i`` holds nucleus ``i`` (same label).

    Examples
    --------
    >>> nuc = np.zeros((40, 60), np.int32); nuc[15:25, 10:20] = 1; nuc[15:25, 34:44] = 2
    >>> img, cells = cell_channel(nuc, np.random.default_rng(0))
    >>> bool((cells[nuc > 0] == nuc[nuc > 0]).all()), sorted(np.unique(cells).tolist())
    (True, [0, 1, 2])
    >>> bool(img[cells > 0].mean() > 2 * img[cells == 0].mean())
    True
    """
    from scipy import ndimage as ndi
    from skimage.segmentation import find_boundaries

    nuclei = np.asarray(nuclei)
    n = int(nuclei.max())
    reach = rng.uniform(*extent, size=n + 1)
    depth = np.full(nuclei.shape, -np.inf)  # how far inside its cell's reach a pixel lies
    cells = np.zeros(nuclei.shape, np.uint32)
    grow = int(np.ceil(extent[1])) + 1
    for lab, sl in enumerate(ndi.find_objects(nuclei), start=1):
        if sl is None:
            continue
        box = tuple(slice(max(s.start - grow, 0), s.stop + grow) for s in sl)
        d = reach[lab] - ndi.distance_transform_edt(nuclei[box] != lab)
        take = (d >= 0) & (d > depth[box])
        depth[box][take] = d[take]
        cells[box][take] = lab
    cells[nuclei > 0] = nuclei[nuclei > 0]
    level = np.concatenate([[0.0], rng.lognormal(0.0, 0.35, size=n)])
    texture = 1.0 + 0.25 * _smooth_noise(rng, nuclei.shape, 2.0)
    signal = photons * level[cells] * np.clip(texture, 0.2, None)
    signal[nuclei > 0] *= 0.3
    signal[find_boundaries(cells, mode="inner") & (cells > 0)] *= 0.45
    expected = ndi.gaussian_filter(signal + background, 0.8)
    counts = rng.poisson(np.maximum(expected, 0.0)) + _CAMERA_OFFSET + rng.normal(0.0, _READ_NOISE, nuclei.shape)
    return np.clip(np.rint(counts), 0, 65535).astype(np.uint16), cells


def _write_tiff_atomic(path: Path, array: np.ndarray, pixel_size: float | None = None) -> None:
    """Write a TIFF under a temporary name in the same folder, then move it into place."""
    kwargs = {}
    if pixel_size:
        kwargs = dict(resolution=(1e4 / pixel_size, 1e4 / pixel_size), resolutionunit="CENTIMETER")
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        tifffile.imwrite(fh, array, photometric="minisblack", **kwargs)


def _fresh_folders(out: Path, *names: str) -> list[Path]:
    """The sub-folders ``names`` of ``out``, created if missing."""
    folders = [out / n for n in names]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    return folders


def write_demo_run(
    out_dir,
    plate="DEMO",
    rows="ABC",
    columns=(1, 2, 3, 4),
    fields=2,
    shape=(512, 512),
    seed=0,
    cells: bool = False,
) -> pd.DataFrame:
    """Write a synthetic imaging run of one plate, CellProfiler-named, with ground truth.

    Nucleus density rises linearly across the columns (0.5 to 1.5) and the channel-2 marker
    level rises geometrically down the rows (1x to 4x; 1x, 2x, 4x for three rows). Each field is
    drawn from its own generator keyed by ``(seed, row, column, field)``, so a well's images do
    not depend on which other wells are written.

    Parameters
    ----------
    out_dir : str or path-like
        Output folder; created if needed.
    plate : str
        Plate name used in the file names.
    rows : str or sequence of str
        Row letters: ``"ABC"`` or ``["A", "B", "C"]``.
    columns : sequence of int
        Column numbers (1-based); wells are named like ``A01``.
    fields : int
        Fields (sites) per well, numbered from 1.
    shape : tuple of int
        Field size ``(H, W)``.
    seed : int
        Seed of the whole run.
    cells : bool
        Also a cytoplasm stain (channel 3, :func:`cell_channel`, from a generator of its own: the nuclei and
        channels 1-2 are the same with or without it) and the cell labels ``..._cells.tif``.

    Returns
    -------
    pandas.DataFrame
        The truth table, one row per field: ``plate, well, row, column, field, n_nuclei,
        density, marker_level``; also written to ``groundtruth/truth.csv``.

    Notes
    -----
    Files written::

        out_dir/images/{plate}_{well}_s{site}_w{channel}.tif     uint16, channels 1 (DNA), 2 (marker)
        out_dir/groundtruth/{plate}_{well}_s{site}_labels.tif    uint32 instance labels
        out_dir/groundtruth/truth.csv                            written last

    Every file is written under a temporary name and renamed into place, and ``truth.csv`` is
    removed first and written last, so an interrupted run never looks complete.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     truth = write_demo_run(d, rows="A", columns=(1, 2), fields=1, shape=(64, 64))
    ...     sorted(p.name for p in (Path(d) / "images").iterdir())
    ['DEMO_A01_s1_w1.tif', 'DEMO_A01_s1_w2.tif', 'DEMO_A02_s1_w1.tif', 'DEMO_A02_s1_w2.tif']
    >>> list(truth.columns)
    ['plate', 'well', 'row', 'column', 'field', 'n_nuclei', 'density', 'marker_level']
    """
    out = Path(out_dir)
    img_dir, gt_dir = _fresh_folders(out, "images", "groundtruth")
    truth_path = gt_dir / "truth.csv"
    truth_path.unlink(missing_ok=True)  # written last: marks a complete demo

    rows = [str(r).upper() for r in (list(rows) if isinstance(rows, str) else rows)]
    columns = [int(c) for c in columns]
    if not rows or not columns or fields < 1:
        raise ValueError("need at least one row, one column and one field")
    densities = np.linspace(0.5, 1.5, len(columns)) if len(columns) > 1 else np.array([1.0])
    markers = np.geomspace(1.0, 4.0, len(rows)) if len(rows) > 1 else np.array([1.0])
    pixel_size = 0.65

    records, written = [], set()
    for ri, row in enumerate(rows):
        for ci, col in enumerate(columns):
            well = f"{row}{col:02d}"
            for site in range(1, fields + 1):
                rng = np.random.default_rng([int(seed), row_index(row), col, site])
                image, labels = synth_field(
                    rng, shape=shape, density=float(densities[ci]), marker_level=float(markers[ri]),
                    pixel_size=pixel_size,
                )
                stem = f"{plate}_{well}_s{site}"
                if cells:
                    stain, cell_labels = cell_channel(labels, np.random.default_rng([int(seed), row_index(row), col, site, 3]))
                    image = np.concatenate([image, stain[None]])
                    _write_tiff_atomic(gt_dir / f"{stem}_cells.tif", cell_labels)
                for ch in range(image.shape[0]):
                    name = f"{stem}_w{ch + 1}.tif"
                    _write_tiff_atomic(img_dir / name, image[ch], pixel_size)
                    written.add(name)
                _write_tiff_atomic(gt_dir / f"{stem}_labels.tif", labels)
                records.append(dict(
                    plate=plate, well=well, row=row, column=col, field=site,
                    n_nuclei=int(labels.max()), density=round(float(densities[ci]), 6),
                    marker_level=round(float(markers[ri]), 6),
                ))
            logger.info("synth demo: wrote well %s (%d field(s))", well, fields)

    stale = sorted(p.name for p in img_dir.glob("*.tif") if p.name not in written)
    if stale:
        logger.warning("%s holds %d .tif file(s) not from this run, e.g. %s",
                       img_dir, len(stale), stale[0])
    truth = pd.DataFrame.from_records(
        records,
        columns=["plate", "well", "row", "column", "field", "n_nuclei", "density", "marker_level"],
    )
    write_table(truth, truth_path)
    logger.info("synth demo: %d fields, %d nuclei -> %s", len(truth), truth.n_nuclei.sum(), out)
    return truth


def write_training_set(out_dir, n_images=16, shape=(256, 256), seed=0) -> pd.DataFrame:
    """Write annotated synthetic images in the layout of ``data/dsb2018``.

    Images come in groups of two overlapping crops (a quarter of the width shared) of one larger
    synthetic field, so that folds grouped by ``group`` keep near-duplicates together. Density,
    brightness (exposure), nucleus size and clustering vary from group to group.

    Parameters
    ----------
    out_dir : str or path-like
        Output folder; created if needed.
    n_images : int
        Number of images (the last group has a single crop when odd).
    shape : tuple of int
        Size ``(H, W)`` of each image.
    seed : int
        Seed of the whole set.

    Returns
    -------
    pandas.DataFrame
        The index, one row per image: ``id, height, width, n_objects, group``; also written to
        ``index.csv``.

    Notes
    -----
    Files written::

        out_dir/images/{id}.tif   uint16 nuclear stain (one channel)
        out_dir/masks/{id}.tif    uint16 instance labels, 0 = background, 1..N
        out_dir/index.csv         written last

    Objects cut by a crop to fewer than 15 pixels are dropped from the mask.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     index = write_training_set(d, n_images=2, shape=(64, 64))
    >>> list(index.columns), index.group.tolist()
    (['id', 'height', 'width', 'n_objects', 'group'], [0, 0])
    """
    out = Path(out_dir)
    img_dir, mask_dir = _fresh_folders(out, "images", "masks")
    index_path = out / "index.csv"
    index_path.unlink(missing_ok=True)  # written last: marks a complete set

    H, W = (int(s) for s in shape)
    overlap = W // 4
    radius_choices = [(5, 10), (6, 14), (8, 16)]
    records = []
    n_groups = math.ceil(n_images / 2)
    for g in range(n_groups):
        rng = np.random.default_rng([int(seed), g])
        n_crops = min(2, n_images - 2 * g)
        big_w = W if n_crops == 1 else 2 * W - overlap
        image, labels = synth_field(
            rng,
            shape=(H, big_w),
            density=float(np.exp(rng.uniform(np.log(0.6), np.log(2.5)))),
            marker_level=1.0,
            radius_range=radius_choices[int(rng.integers(len(radius_choices)))],
            cluster_fraction=float(rng.uniform(0.2, 0.45)),
            brightness=float(np.exp(rng.uniform(np.log(0.3), np.log(2.0)))),
        )
        for k in range(n_crops):
            x0 = k * (W - overlap)
            img = image[0, :, x0:x0 + W]
            mask = dense_labels(remove_small(labels[:, x0:x0 + W], 15))[1].astype(np.uint16)
            image_id = f"synth{g:03d}_{k}"
            _write_tiff_atomic(img_dir / f"{image_id}.tif", np.ascontiguousarray(img))
            _write_tiff_atomic(mask_dir / f"{image_id}.tif", mask)
            records.append(dict(id=image_id, height=H, width=W, n_objects=int(mask.max()), group=g))
    index = pd.DataFrame.from_records(records, columns=["id", "height", "width", "n_objects", "group"])
    write_table(index, index_path)
    logger.info("synth train: %d images in %d groups, %d objects -> %s",
                len(index), n_groups, index.n_objects.sum(), out)
    return index
