"""The ensemble (seed 004, section 4.3): a LightGBM model predicts each candidate mask's IoU with the
truth, and the final segmentation keeps, nucleus by nucleus, the best candidate.

Candidates are the objects of each engine's label image of a field (U-Net watershed instances, Mask
R-CNN instances after overlap resolution; any label images can take part). Each gets features
(:func:`candidate_features`): regionprops shape descriptors, the U-Net's probabilities over the mask,
the Mask R-CNN score, and how it overlaps the other engines' candidates -- all invariant to where the
mask lies in the image. Trained on out-of-fold candidates of annotated images with their IoU with
the best-matching true nucleus as target (:func:`candidate_targets`), a :class:`Picker` (several
LightGBM boosters with varied learning rate, leaves and feature fraction, averaged) predicts that
IoU for new candidates, and :func:`pick` keeps them greedily by predicted IoU: a candidate whose IoU
with an already kept one exceeds ``nms_iou`` is dropped, and so is one predicted under ``min_iou``.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

__all__ = [
    "SHAPE_FEATURES",
    "MAP_FEATURES",
    "candidate_features",
    "candidate_targets",
    "pair_overlaps",
    "PickerParams",
    "Picker",
    "train_picker",
    "pick",
    "oracle_pick",
    "field_candidates",
    "ensemble_field",
    "engine_predictions",
    "cross_validated_predictions",
    "feature_columns",
    "compare_methods",
    "PICKER_FORMAT",
]

PICKER_FORMAT = "plateseg-picker"
PICKER_VERSION = 1
# regionprops descriptors (skimage names), all independent of where the mask lies
SHAPE_FEATURES = ("area", "perimeter", "eccentricity", "area_convex", "solidity", "extent",
                  "axis_major_length", "axis_minor_length", "equivalent_diameter_area", "euler_number",
                  "area_filled")
MAP_FEATURES = ("fg_mean", "fg_min", "boundary_mean", "boundary_max", "centre_max", "ring_fg_mean")
# features of a candidate's rival (the other engines' candidate overlapping it most), as ``other_<name>``
RIVAL_FEATURES = ("area", "score", "fg_mean", "solidity")


def _dense(labels: np.ndarray):
    """Object ids (ascending) and the label image renumbered 1..n (for bincount-sized arrays)."""
    labels = np.asarray(labels)
    ids = np.unique(labels)
    ids = ids[ids > 0]
    lut_size = int(labels.max()) + 1 if labels.size else 1
    lut = np.zeros(lut_size, np.int64)
    lut[ids] = np.arange(1, len(ids) + 1)
    return ids.astype(np.int64), lut[labels.astype(np.int64)]


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


def candidate_features(labels: dict, maps=None, scores: dict | None = None) -> pd.DataFrame:
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
        df["area_rel"] = df["area"] / float(np.median(df["area"]))
        df["field_density"] = np.float64(n * 1e4 / dense.size)
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
    return pd.concat(list(frames.values()), ignore_index=True)


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


# --------------------------------------------------------------------------- picker

@dataclass
class PickerParams:
    """Settings of the picker: ``n_boosters`` LightGBM regressors, booster ``i`` with learning rate
    ``learning_rates[i % 3]``, leaves ``num_leaves[(i // 3) % 3]`` (shifted so that the combinations
    differ) and feature fraction ``feature_fractions[i % len]``; ``num_boost_round`` trees each,
    ``min_data_in_leaf``, ``lambda_l2``; seeds ``seed + i``. Predictions are averaged."""

    n_boosters: int = 5
    num_boost_round: int = 300
    learning_rates: tuple = (0.03, 0.05, 0.1)
    num_leaves: tuple = (15, 31, 63)
    feature_fractions: tuple = (0.7, 0.85, 1.0)
    min_data_in_leaf: int = 20
    lambda_l2: float = 1.0
    seed: int = 0

    @classmethod
    def coerce(cls, params=None) -> "PickerParams":
        from plateseg.config.checks import coerce_params

        return coerce_params(cls, params, "picker")

    def booster_params(self, i: int) -> dict:
        lrs, leaves, ffs = self.learning_rates, self.num_leaves, self.feature_fractions
        return {
            "objective": "regression",
            "metric": "l2",
            "learning_rate": float(lrs[i % len(lrs)]),
            "num_leaves": int(leaves[(i + i // len(lrs)) % len(leaves)]),
            "feature_fraction": float(ffs[(i + 2 * (i // len(lrs))) % len(ffs)]),
            "min_data_in_leaf": int(self.min_data_in_leaf),
            "lambda_l2": float(self.lambda_l2),
            "seed": int(self.seed + i),
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": 1,
            "verbosity": -1,
        }


class Picker:
    """Averaged LightGBM boosters predicting a candidate's IoU with the truth from its features."""

    def __init__(self, features, boosters, meta=None):
        self.features = list(features)
        self.boosters = list(boosters)
        self.meta = dict(meta or {})

    def predict(self, table: pd.DataFrame) -> np.ndarray:
        """Predicted IoU (clipped to 0..1) of every row of ``table`` (missing features are NaN)."""
        if not len(table):
            return np.zeros(0)
        X = np.column_stack([pd.to_numeric(table[f], errors="coerce").to_numpy(np.float64)
                             if f in table else np.full(len(table), np.nan) for f in self.features])
        pred = np.mean([b.predict(X, num_threads=1) for b in self.boosters], axis=0)
        return np.clip(pred, 0.0, 1.0)

    def importances(self) -> pd.DataFrame:
        """Gain and split importance of every feature, averaged over the boosters, by decreasing gain."""
        gain = np.mean([b.feature_importance("gain") for b in self.boosters], axis=0)
        split = np.mean([b.feature_importance("split") for b in self.boosters], axis=0)
        total = gain.sum() or 1.0
        df = pd.DataFrame({"feature": self.features, "gain": gain, "gain_share": gain / total, "splits": split})
        return df.sort_values(["gain", "feature"], ascending=[False, True], kind="stable").reset_index(drop=True)

    def save(self, path) -> None:
        """Write the picker (feature list, boosters as LightGBM model text, metadata) as one JSON file, atomically."""
        from plateseg.io.files import atomic_path

        payload = {"format": PICKER_FORMAT, "format_version": PICKER_VERSION, "features": self.features,
                   "meta": self.meta, "boosters": [b.model_to_string() for b in self.boosters]}
        with atomic_path(Path(path)) as tmp:
            tmp.write_text(json.dumps(payload))

    @classmethod
    def load(cls, path) -> "Picker":
        import lightgbm as lgb

        payload = json.loads(Path(path).read_text())
        if payload.get("format") != PICKER_FORMAT:
            raise ValueError(f"{path} is not a {PICKER_FORMAT} file")
        if int(payload.get("format_version", 0)) > PICKER_VERSION:
            raise ValueError(f"{path} has format version {payload['format_version']}, newer than this code")
        boosters = [lgb.Booster(model_str=s) for s in payload["boosters"]]
        return cls(payload["features"], boosters, payload.get("meta"))


def feature_columns(table: pd.DataFrame) -> list[str]:
    """The feature columns of a candidate table: everything numeric but ids and targets."""
    skip = {"label", "field", "iou", "image", "fold", "predicted_iou"}
    return [c for c in table.columns if c not in skip and pd.api.types.is_numeric_dtype(table[c])]


def train_picker(table: pd.DataFrame, target: str = "iou", params=None, features=None, log=None) -> Picker:
    """Train the picker on candidates with known IoU (out-of-fold predictions of annotated images).

    Parameters
    ----------
    table : pandas.DataFrame
        Candidate features (:func:`candidate_features`) and the ``target`` column.
    params : PickerParams or dict, optional
    features : list of str, optional
        Default :func:`feature_columns` of ``table``.
    """
    import lightgbm as lgb

    p = PickerParams.coerce(params)
    feats = list(features or feature_columns(table))
    if not len(table):
        raise ValueError("no candidates to train the picker on")
    X = table[feats].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    y = table[target].to_numpy(np.float64)
    boosters = []
    for i in range(p.n_boosters):
        bp = p.booster_params(i)
        data = lgb.Dataset(X, y, feature_name=feats, free_raw_data=False,
                           params={"verbosity": -1, "min_data_in_leaf": bp["min_data_in_leaf"]})
        boosters.append(lgb.train(bp, data, num_boost_round=p.num_boost_round))
        if log is not None:
            log.info("booster %d/%d: lr %g, %d leaves, feature fraction %g", i + 1, p.n_boosters,
                     bp["learning_rate"], bp["num_leaves"], bp["feature_fraction"])
    meta = {"params": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(p).items()},
            "n_candidates": int(len(table)), "target": target}
    return Picker(feats, boosters, meta)


# --------------------------------------------------------------------------- picking

def pick(labels: dict, table: pd.DataFrame, score: str = "predicted_iou", min_iou: float = 0.3,
         nms_iou: float = 0.3):
    """Greedy non-maximum suppression of the candidates of one field by predicted IoU.

    Candidates (rows of ``table``: ``engine``, ``label`` and ``score``) are visited by decreasing
    ``score``; one under ``min_iou`` is dropped, and so is one whose IoU with an already kept
    candidate exceeds ``nms_iou``. Kept masks are painted so that a pixel claimed by two kept
    candidates goes to the one with the higher score.

    Returns
    -------
    labels : numpy.ndarray
        uint32, objects numbered 1..N by decreasing score.
    picks : pandas.DataFrame
        ``label`` (in the returned image), ``engine``, ``source_label``, ``predicted_iou`` (the
        ``score``), ``area`` (pixels kept).
    """
    engines = list(labels)
    shape = np.asarray(labels[engines[0]]).shape
    order = table.sort_values([score, "engine", "label"], ascending=[False, True, True], kind="stable")
    order = order[order[score] >= min_iou]
    # IoUs between candidates of different engines (those of one engine never overlap)
    conflicts: dict[tuple, list] = {}
    for i, a in enumerate(engines):
        for b in engines[i + 1:]:
            ov = pair_overlaps(labels[a], labels[b])
            ov = ov[ov["iou"] > nms_iou]
            for la, lb in zip(ov["label_a"].tolist(), ov["label_b"].tolist()):
                conflicts.setdefault((a, la), []).append((b, lb))
                conflicts.setdefault((b, lb), []).append((a, la))
    kept, kept_set = [], set()
    for engine, label, s in zip(order["engine"], order["label"].astype(np.int64), order[score]):
        key = (engine, int(label))
        if any(c in kept_set for c in conflicts.get(key, ())):
            continue
        kept.append((engine, int(label), float(s)))
        kept_set.add(key)
    out = np.zeros(shape, np.uint32)
    # paint from the lowest to the highest score: higher scores win contested pixels
    for new, (engine, label, _) in reversed(list(enumerate(kept, start=1))):
        out[np.asarray(labels[engine]) == label] = new
    areas = np.bincount(out.ravel(), minlength=len(kept) + 1)
    picks = pd.DataFrame({"label": np.arange(1, len(kept) + 1, dtype=np.int64),
                          "engine": [k[0] for k in kept], "source_label": [k[1] for k in kept],
                          "predicted_iou": [k[2] for k in kept], "area": areas[1:len(kept) + 1]})
    if (picks["area"] == 0).any():  # lost every pixel to higher-scoring picks
        from skimage.segmentation import relabel_sequential

        picks = picks[picks["area"] > 0].reset_index(drop=True)
        out = relabel_sequential(out)[0].astype(np.uint32)
        picks["label"] = np.arange(1, len(picks) + 1)
    return out, picks


def oracle_pick(labels: dict, truth: np.ndarray, min_iou: float = 0.3, nms_iou: float = 0.3):
    """The upper bound of picking: :func:`pick` with every candidate's true IoU as its score."""
    rows = []
    for engine, lab in labels.items():
        t = candidate_targets(lab, truth)
        rows.append(pd.DataFrame({"engine": engine, "label": t.index.to_numpy(), "true_iou": t.to_numpy()}))
    table = pd.concat(rows, ignore_index=True)
    return pick(labels, table, score="true_iou", min_iou=min_iou, nms_iou=nms_iou)


# --------------------------------------------------------------------------- fields and images

def field_candidates(labels: dict, maps=None, scores: dict | None = None, truth=None) -> pd.DataFrame:
    """:func:`candidate_features` of one field, plus the target ``iou`` when the ``truth`` is known."""
    table = candidate_features(labels, maps, scores)
    if truth is not None and len(table):
        iou = pd.concat([candidate_targets(lab, truth).rename_axis("label").reset_index().assign(engine=e)
                         for e, lab in labels.items()], ignore_index=True)
        table = table.merge(iou, on=["engine", "label"], how="left", validate="one_to_one")
    return table


def ensemble_field(labels: dict, picker: Picker, maps=None, scores: dict | None = None, min_iou: float = 0.3,
                   nms_iou: float = 0.3):
    """Ensemble labels of one field: features of every candidate, predicted IoU, :func:`pick`."""
    table = candidate_features(labels, maps, scores)
    if not len(table):
        shape = np.asarray(next(iter(labels.values()))).shape
        return np.zeros(shape, np.uint32), pick(labels, pd.DataFrame(
            {"engine": [], "label": [], "predicted_iou": []}), min_iou=min_iou, nms_iou=nms_iou)[1]
    table["predicted_iou"] = picker.predict(table)
    return pick(labels, table, min_iou=min_iou, nms_iou=nms_iou)


def engine_predictions(image, unet, maskrcnn, tile_size: int, halo: int, batch_size: int, watershed: dict,
                       detection: dict, device=None):
    """Both engines on one image: ``(maps, {"unet": labels, "maskrcnn": labels}, {"maskrcnn": scores})``.

    ``unet`` and ``maskrcnn`` are ``(model, meta)`` pairs; ``watershed`` the keyword arguments of
    :func:`plateseg.segment.watershed.instances_from_maps` (with markers ``points``, the Mask R-CNN centroids
    are the markers); ``detection`` those of :func:`plateseg.engines.maskrcnn.predict_instances`
    (``score_threshold``, ``mask_threshold``, ``min_area``).
    """
    from plateseg.engines.maskrcnn import predict_instances
    from plateseg.engines.unet import predict_maps
    from plateseg.segment.watershed import instances_from_maps

    mlab, mtab = predict_instances(*maskrcnn, image, tile_size, halo, batch_size, device, **detection)
    maps = predict_maps(*unet, image, tile_size, halo, batch_size, device)
    ws = dict(watershed)
    if ws.get("mode") == "points":
        ws["points"] = mtab[["centroid_y", "centroid_x"]].to_numpy()
    ulab = instances_from_maps(maps, **ws)
    return maps, {"unet": ulab, "maskrcnn": mlab}, {"maskrcnn": dict(zip(mtab["label"].tolist(), mtab["score"].tolist()))}


def cross_validated_predictions(table: pd.DataFrame, params=None, group: str = "fold",
                                always: pd.DataFrame | None = None) -> np.ndarray:
    """Predicted IoU of every candidate by a picker trained on the other groups' candidates only
    (plus the candidates of ``always``, e.g. images that are never predicted, if given)."""
    pred = np.full(len(table), np.nan)
    features = [c for c in feature_columns(table) if c != group]
    for g in sorted(table[group].unique()):
        held = (table[group] == g).to_numpy()
        if held.all() and always is None:
            raise ValueError("cross-validating the picker needs candidates of at least two folds")
        train = table[~held] if always is None else pd.concat([always, table[~held]], ignore_index=True)
        picker = train_picker(train, params=params, features=features)
        pred[held] = picker.predict(table[held])
    return pred


def compare_methods(table: pd.DataFrame, labels: dict, truths: dict, extra: dict | None = None,
                    min_iou: float = 0.3, nms_iou: float = 0.3):
    """Each engine alone, the ensemble and the oracle (and ``extra`` methods) on annotated images.

    Parameters
    ----------
    table : pandas.DataFrame
        Candidates of the images (:func:`field_candidates` with ``image``, ``iou`` and the
        picker's ``predicted_iou``, predicted by a picker that did not train on the image).
    labels : dict
        image id -> {engine: label image}.
    truths : dict
        image id -> true labels.
    extra : dict, optional
        method name -> {image id: label image} (e.g. the classical baseline).

    Returns
    -------
    summary : pandas.DataFrame
        One row per method: :func:`plateseg.evaluation.metrics.evaluate_dataset` summary (DSB mAP, COCO AP,
        AP50, AP75, Dice, precision/recall at 0.7, over/under-segmentation, ...), ``share_<engine>``
        (share of the kept objects from each engine, ensemble and oracle) and, for the ensemble,
        ``iou_pearson`` / ``iou_spearman`` between predicted and true IoU of all candidates.
    per_image : dict
        method -> per-image DataFrame.
    """
    from scipy.stats import pearsonr, spearmanr

    from plateseg.evaluation.metrics import evaluate_dataset

    ids = list(truths)
    engines = list(labels[ids[0]])
    gts = [truths[i] for i in ids]
    by_image = {i: t for i, t in table.groupby("image")}
    empty = table.iloc[:0]
    preds = {e: ([labels[i][e] for i in ids], []) for e in engines}
    for i in ids:
        t = by_image.get(i, empty)
        for e in engines:
            te = t[t["engine"] == e]
            col = "score" if te["score"].notna().all() and len(te) else "fg_mean"
            preds[e][1].append(dict(zip(te["label"].astype(int), te[col].astype(float))))
    methods = dict(preds)
    for name, per in (extra or {}).items():
        methods[name] = ([per[i] for i in ids], None)
    shares = {}
    for name, score in (("ensemble", "predicted_iou"), ("oracle", "iou")):
        outs, scs, kept = [], [], []
        for i in ids:
            out, picks = pick(labels[i], by_image.get(i, empty), score=score, min_iou=min_iou, nms_iou=nms_iou)
            outs.append(out)
            scs.append(dict(zip(picks["label"].astype(int), picks["predicted_iou"].astype(float))))
            kept.append(picks["engine"])
        methods[name] = (outs, scs)
        kept = pd.concat(kept) if kept else pd.Series(dtype=object)
        shares[name] = {f"share_{e}": float((kept == e).mean()) if len(kept) else np.nan for e in engines}
    rows, per_image = [], {}
    for name, (pr, sc) in methods.items():
        df, summary = evaluate_dataset(gts, pr, scores=sc, names=ids, tie="gt")
        per_image[name] = df
        rows.append({"method": name, **summary, **shares.get(name, {})})
    out = pd.DataFrame(rows)
    ok = table[["iou", "predicted_iou"]].dropna()
    if len(ok) > 2:
        out.loc[out["method"] == "ensemble", "iou_pearson"] = float(pearsonr(ok["predicted_iou"], ok["iou"]).statistic)
        out.loc[out["method"] == "ensemble", "iou_spearman"] = float(spearmanr(ok["predicted_iou"], ok["iou"]).statistic)
    return out, per_image
