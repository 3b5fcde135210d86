"""Candidate masks of the ensemble (seed 004, section 4.3): their features and IoU targets.

Candidates are the objects of each engine's label image of a field (U-Net watershed instances, Mask
R-CNN instances after overlap resolution; any label images can take part). Each gets features
(:func:`candidate_features`): regionprops shape descriptors, the U-Net's probabilities over the mask,
the Mask R-CNN score, and how it overlaps the other engines' candidates -- all invariant to where the
mask lies in the image. On annotated images, the target of a candidate is its IoU with the
best-matching true nucleus (:func:`candidate_targets`); :func:`field_candidates` gives both.
The picker (:mod:`plateseg.ensemble.picker`) learns the target from the features.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from plateseg.labels import dense_labels as _dense

__all__ = [
    "SHAPE_FEATURES",
    "MAP_FEATURES",
    "RIVAL_FEATURES",
    "pair_overlaps",
    "candidate_features",
    "field_statistics",
    "candidate_targets",
    "feature_columns",
    "field_candidates",
    "save_candidate_labels",
    "load_candidate_labels",
]

# regionprops descriptors (skimage names), all independent of where the mask lies
SHAPE_FEATURES = ("area", "perimeter", "eccentricity", "area_convex", "solidity", "extent",
                  "axis_major_length", "axis_minor_length", "equivalent_diameter_area", "euler_number",
                  "area_filled")
MAP_FEATURES = ("fg_mean", "fg_min", "boundary_mean", "boundary_max", "centre_max", "ring_fg_mean")
# size features in pixels (converted to the model's pixels for a zoomed field)
LENGTH_FEATURES = ("perimeter", "axis_major_length", "axis_minor_length", "equivalent_diameter_area", "bbox_height",
                   "bbox_width")
AREA_FEATURES = ("area", "area_convex", "area_filled")
# features of a candidate's rival (the other engines' candidate overlapping it most), as ``other_<name>``
RIVAL_FEATURES = ("area", "score", "fg_mean", "solidity")


def pair_overlaps(a: np.ndarray, b: np.ndarray) -> pd.DataFrame:
    """Every pair of overlapping objects of two label images: ``label_a, label_b, inter, iou``.

    Examples
    --------
    >>> a = np.array([[1, 1, 1, 0]]); b = np.array([[0, 5, 5, 5]])
    >>> pair_overlaps(a, b).to_dict("records")
    [{'label_a': 1, 'label_b': 5, 'inter': 2, 'iou': 0.5}]
    """
    a, b = np.asarray(a).astype(np.int64), np.asarray(b).astype(np.int64)
    both = (a > 0) & (b > 0)
    area_a = np.bincount(a.ravel())
    area_b = np.bincount(b.ravel())
    if not both.any():
        return pd.DataFrame({"label_a": pd.Series([], dtype=np.int64), "label_b": pd.Series([], dtype=np.int64),
                             "inter": pd.Series([], dtype=np.int64), "iou": pd.Series([], dtype=np.float64)})
    pairs, inter = np.unique(np.stack([a[both], b[both]]), axis=1, return_counts=True)
    la, lb = pairs
    iou = inter / (area_a[la] + area_b[lb] - inter)
    return pd.DataFrame({"label_a": la, "label_b": lb, "inter": inter.astype(np.int64),
                         "iou": iou.astype(np.float64)})


def candidate_features(labels: dict, maps=None, scores: dict | None = None, scale: float = 1.0,
                       field_stats: dict | None = None) -> pd.DataFrame:
    """Features of every candidate of one field (one row per object of each engine's label image).

    Parameters
    ----------
    labels : dict
        engine name -> ``(h, w)`` integer label image (0 = background), all of the same field.
    maps : array_like, optional
        ``(3, h, w)`` U-Net probabilities (foreground, boundary, centre). Without them the
        :data:`MAP_FEATURES` are NaN.
    scores : dict, optional
        engine name -> {label: detection score} (Mask R-CNN); ``score`` is NaN for engines or
        objects without one.
    scale : float
        Zoom from the field's pixels to the model's (rule estimate_scale): lengths are multiplied by
        it, areas by its square and ``field_density`` divided by its square, so the features are those the
        picker learnt at the model's scale.
    field_stats : dict, optional
        engine -> ``{"median_area", "density"}`` of the whole field (:func:`field_statistics`) when the
        labels are one block of a larger field; default those of the labels given.

    Returns
    -------
    pandas.DataFrame
        ``engine``, ``label``, ``engine_index`` (position in ``labels``), the
        :data:`SHAPE_FEATURES`, ``circularity`` (4 pi area / perimeter^2), ``bbox_height``,
        ``bbox_width``, ``score``, the :data:`MAP_FEATURES` (means/extremes of the maps over the
        mask; ``ring_fg_mean`` over a 2-px ring outside it: a ring pixel near two objects counts
        for the one with the larger label), and the overlap with the other engines' candidates:
        ``n_overlap_other`` (how many overlap this one), ``best_iou_other`` (the largest IoU with
        one of them), ``covered_other`` (share of this mask they cover, mean over the other
        engines); its rival (the other engines' candidate with the largest IoU with it):
        ``other_area_ratio`` (this area / the rival's), ``other_score``, ``other_fg_mean``,
        ``other_solidity`` (NaN without a rival); and its field: ``area_rel`` (area / median area of
        the engine's candidates in the field), ``field_density`` (the engine's candidates per
        10,000 px), ``touch_frac`` (share of its edge pixels touching another candidate of the
        same engine). Nothing depends on the mask's position in the field.

    Examples
    --------
    >>> a = np.zeros((8, 8), int); a[1:5, 1:5] = 1
    >>> b = np.zeros((8, 8), int); b[2:6, 1:5] = 7
    >>> t = candidate_features({"unet": a, "maskrcnn": b}, scores={"maskrcnn": {7: 0.9}})
    >>> t[["engine", "label", "area", "score", "best_iou_other"]].round(2).values.tolist()
    [['unet', 1, 16.0, nan, 0.6], ['maskrcnn', 7, 16.0, 0.9, 0.6]]
    """
    from skimage.measure import regionprops_table

    engines = list(labels)
    maps = None if maps is None else np.asarray(maps, np.float32)
    scores = scores or {}
    frames = {}
    for k, engine in enumerate(engines):
        lab = np.asarray(labels[engine])
        ids, dense = _dense(lab)
        n = len(ids)
        if n == 0:
            continue
        props = regionprops_table(dense, properties=("label", "bbox") + SHAPE_FEATURES)
        df = pd.DataFrame({"engine": engine, "label": ids, "engine_index": k})
        for f in SHAPE_FEATURES:
            df[f] = np.asarray(props[f], np.float64)
        df["circularity"] = 4 * math.pi * df["area"] / np.maximum(df["perimeter"], 1.0) ** 2
        df["bbox_height"] = (props["bbox-2"] - props["bbox-0"]).astype(np.float64)
        df["bbox_width"] = (props["bbox-3"] - props["bbox-1"]).astype(np.float64)
        sc = scores.get(engine, {})
        df["score"] = [float(sc.get(int(i), np.nan)) for i in ids]
        index = np.arange(1, n + 1)
        if maps is not None:
            fg, bd, ce = maps[0], maps[1], maps[2]
            df["fg_mean"] = ndi.mean(fg, dense, index)
            df["fg_min"] = ndi.minimum(fg, dense, index)
            df["boundary_mean"] = ndi.mean(bd, dense, index)
            df["boundary_max"] = ndi.maximum(bd, dense, index)
            df["centre_max"] = ndi.maximum(ce, dense, index)
            # ring: pixels within 2 px outside the object (not in it), whatever they belong to
            grown = ndi.grey_dilation(dense, footprint=np.ones((5, 5), bool), mode="constant", cval=0)
            ring = (dense == 0) & (grown > 0)
            ring_sum = np.bincount(grown[ring], weights=fg[ring].astype(np.float64), minlength=n + 1)[1:]
            ring_n = np.bincount(grown[ring], minlength=n + 1)[1:]
            with np.errstate(invalid="ignore", divide="ignore"):
                df["ring_fg_mean"] = np.where(ring_n > 0, ring_sum / np.maximum(ring_n, 1), np.nan)
        else:
            for f in MAP_FEATURES:
                df[f] = np.nan
        # the field around it: size relative to the engine's typical object, crowding, contact
        stats = (field_stats or {}).get(engine)
        df["area_rel"] = df["area"] / (float(np.median(df["area"])) if stats is None else stats["median_area"])
        df["field_density"] = np.float64(n * 1e4 / dense.size if stats is None else stats["density"])
        df["touch_frac"] = _touching_share(dense, n)
        frames[engine] = df
    if not frames:
        return pd.DataFrame(columns=["engine", "label", "engine_index"])
    lookup = pd.concat(list(frames.values())).set_index(["engine", "label"])[list(RIVAL_FEATURES)]
    for engine, df in frames.items():
        lab = np.asarray(labels[engine])
        others = [pair_overlaps(lab, labels[o]).assign(engine=o) for o in engines if o != engine]
        ov = pd.concat(others, ignore_index=True) if others else pair_overlaps(lab, np.zeros_like(lab)).assign(engine="")
        g = ov.groupby("label_a")
        df["n_overlap_other"] = df["label"].map(g.size()).fillna(0).astype(np.float64)
        df["best_iou_other"] = df["label"].map(g["iou"].max()).fillna(0.0).astype(np.float64)
        # share of the mask the other engines' candidates cover (mean over the other engines)
        covered = df["label"].map(g["inter"].sum()).fillna(0) / df["area"] / max(len(others), 1)
        df["covered_other"] = covered.astype(np.float64)
        # its rival: the other engines' candidate with the largest IoU with it (NaN without one)
        best = ov.sort_values(["iou", "engine", "label_b"], ascending=[False, True, True], kind="stable")
        best = best.drop_duplicates("label_a").set_index("label_a").reindex(df["label"])
        rival = lookup.reindex(pd.MultiIndex.from_arrays([best["engine"].fillna(""),
                                                          best["label_b"].fillna(0).astype(np.int64)]))
        df["other_area_ratio"] = df["area"].to_numpy() / rival["area"].to_numpy(np.float64)
        for f in RIVAL_FEATURES[1:]:
            df[f"other_{f}"] = rival[f].to_numpy(np.float64)
    table = pd.concat(list(frames.values()), ignore_index=True)
    if scale != 1.0:  # sizes in the model's pixels (ratios and shares need no change)
        table[list(LENGTH_FEATURES)] *= scale
        table[list(AREA_FEATURES)] *= scale ** 2
        table["field_density"] /= scale ** 2
    return table


def field_statistics(labels: dict, block_size: int = 2048, threads: int = 1) -> dict:
    """engine -> ``{"median_area", "density"}`` (candidates per 10,000 px) of whole label images, read block by
    block (``threads`` blocks at a time, :func:`plateseg.tiling.grid.map_windows`): the field-level features of
    :func:`candidate_features` for a field processed in blocks.

    Examples
    --------
    >>> a = np.zeros((10, 10), int); a[0:2, 0:2] = 1; a[5:9, 5:9] = 2; a[0:1, 8:10] = 3
    >>> field_statistics({"unet": a}, block_size=4)
    {'unet': {'median_area': 4.0, 'density': 300.0}}
    """
    from plateseg.tiling.grid import map_windows, tile_grid

    def block_areas(block, t):
        ids, counts = np.unique(np.asarray(block), return_counts=True)
        return pd.Series(counts[ids > 0], index=ids[ids > 0])

    out = {}
    for engine, lab in labels.items():
        h, w = lab.shape
        areas = pd.Series(dtype=np.int64)
        for _, block in map_windows(block_areas, lambda t: lab[t.core], tile_grid((h, w), block_size, 0), threads):
            areas = areas.add(block, fill_value=0)
        if len(areas):
            out[engine] = {"median_area": float(np.median(areas.to_numpy())), "density": len(areas) * 1e4 / (h * w)}
    return out


def _touching_share(dense: np.ndarray, n: int) -> np.ndarray:
    """Per object 1..n of a dense label image: share of its edge pixels that touch another object."""
    foot = np.ones((3, 3), bool)
    hi = ndi.grey_dilation(dense, footprint=foot, mode="nearest")
    lo = ndi.grey_erosion(np.where(dense > 0, dense, n + 1), footprint=foot, mode="nearest")
    inside = dense > 0
    touch = inside & ((hi != dense) | (lo != dense))
    edge = touch | (inside & (ndi.grey_erosion(dense, footprint=foot, mode="constant", cval=0) != dense))
    n_edge = np.bincount(dense[edge], minlength=n + 1)[1:]
    n_touch = np.bincount(dense[touch], minlength=n + 1)[1:]
    return n_touch / np.maximum(n_edge, 1)


def candidate_targets(labels: np.ndarray, truth: np.ndarray) -> pd.Series:
    """IoU of each object of ``labels`` with its best-matching true object (0 if it overlaps none).

    Returns a Series indexed by label (ascending).

    Examples
    --------
    >>> cand = np.array([[1, 1, 0, 2]]); gt = np.array([[3, 3, 3, 0]])
    >>> candidate_targets(cand, gt).round(3).to_dict()
    {1: 0.667, 2: 0.0}
    """
    ids, _ = _dense(labels)
    ov = pair_overlaps(labels, truth)
    best = ov.groupby("label_a")["iou"].max() if len(ov) else pd.Series(dtype=np.float64)
    return pd.Series([float(best.get(i, 0.0)) for i in ids], index=ids, name="iou", dtype=np.float64)


def feature_columns(table: pd.DataFrame) -> list[str]:
    """The feature columns of a candidate table: everything numeric but ids and targets.

    Examples
    --------
    >>> feature_columns(pd.DataFrame({"engine": ["unet"], "label": [1], "area": [3.0], "iou": [0.5]}))
    ['area']
    """
    skip = {"label", "field", "iou", "image", "fold", "predicted_iou"}
    return [c for c in table.columns if c not in skip and pd.api.types.is_numeric_dtype(table[c])]

def field_candidates(labels: dict, maps=None, scores: dict | None = None, truth=None) -> pd.DataFrame:
    """:func:`candidate_features` of one field, plus the target ``iou`` when the ``truth`` is known.

    Parameters
    ----------
    labels, maps, scores
        As :func:`candidate_features`.
    truth : array_like, optional
        The field's true labels; adds the column ``iou`` (:func:`candidate_targets`).

    Examples
    --------
    >>> a = np.zeros((6, 6), int); a[1:4, 1:4] = 1
    >>> gt = np.zeros((6, 6), int); gt[1:4, 1:5] = 2
    >>> field_candidates({"unet": a}, truth=gt)[["engine", "label", "iou"]].values.tolist()
    [['unet', 1, 0.75]]
    """
    table = candidate_features(labels, maps, scores)
    if truth is not None and len(table):
        iou = pd.concat([candidate_targets(lab, truth).rename_axis("label").reset_index().assign(engine=e)
                         for e, lab in labels.items()], ignore_index=True)
        table = table.merge(iou, on=["engine", "label"], how="left", validate="one_to_one")
    return table

def save_candidate_labels(labels: dict, path) -> None:
    """Write the candidates' label images (image id -> {engine: labels}) as one ``.npz``, atomically.

    Keys are ``<image id>/<engine>``; :func:`load_candidate_labels` reads them back.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "labels.npz"
    >>> save_candidate_labels({"a": {"unet": np.ones((2, 2), np.uint32)}}, path)
    >>> load_candidate_labels([path])["a"]["unet"].sum()
    np.uint64(4)
    """
    from plateseg.io.files import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **{f"{i}/{e}": lab for i, labs in labels.items() for e, lab in labs.items()})


def load_candidate_labels(paths) -> dict:
    """The label images of :func:`save_candidate_labels` files: image id -> {engine: labels}."""
    labels: dict = {}
    for path in paths:
        with np.load(path) as npz:
            for key in npz.files:
                image_id, engine = key.rsplit("/", 1)
                labels.setdefault(image_id, {})[engine] = npz[key]
    return labels
