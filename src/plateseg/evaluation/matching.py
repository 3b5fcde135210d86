"""Overlaps of two instance label images and the object-matching metrics built on them.

The overlap of all object pairs is computed once per image pair from a joint histogram of
the two label images (sparse: only pairs that share pixels are kept), so images with
thousands of objects are cheap; no function loops over per-object pixel masks. IoU values are
compared with the *nominal* threshold, and the ``tie`` rule decides an IoU of exactly ``t``
(``"ge"``: stardist and COCO; ``"gt"``: Kaggle DSB2018); see :mod:`plateseg.evaluation.metrics`.

Examples
--------
>>> import numpy as np
>>> gt = np.zeros((4, 4), int); gt[:2, :2] = 1
>>> matching(gt, gt)["tp"], dsb_map(gt, gt)
(1, 1.0)
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["DSB_THRESHOLDS", "Overlap", "overlap", "check_pair", "check_tie", "iou_matrix", "matching",
           "precision_recall_at", "dsb_map", "dsb_map_dataset", "object_f1_avg", "match_overlap", "counts_dict", "dsb_map_overlap", "object_f1_overlap"]

#: IoU thresholds 0.50:0.05:0.95 of the DSB2018 mAP and of seed 000's object-wise metrics.
DSB_THRESHOLDS = np.round(np.arange(0.5, 1.0, 0.05), 10)

_DENSE_HIST_MAX = 1 << 22  # largest joint histogram (n_gt * n_pred cells) built with bincount

# --------------------------------------------------------------------------------------------
# overlap core
# --------------------------------------------------------------------------------------------


def _check_labels(lab, name: str) -> np.ndarray:
    lab = np.asarray(lab)
    if lab.dtype == bool:
        return lab.astype(np.uint8)
    if not np.issubdtype(lab.dtype, np.integer):
        raise TypeError(f"{name} must be an integer label image, got dtype {lab.dtype}")
    if lab.size and np.issubdtype(lab.dtype, np.signedinteger) and lab.min() < 0:
        raise ValueError(f"{name} must not contain negative labels")
    return lab


def check_pair(gt, pred) -> tuple[np.ndarray, np.ndarray]:
    gt = _check_labels(gt, "gt")
    pred = _check_labels(pred, "pred")
    if gt.shape != pred.shape:
        raise ValueError(f"gt and pred must have the same shape, got {gt.shape} and {pred.shape}")
    return gt, pred


def _index_labels(lab: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Map label ids to 1..n. Returns (sorted ids, index image (flat, int64), areas)."""
    flat = lab.ravel()
    if flat.size == 0:
        e = np.zeros(0, np.int64)
        return e, e, e
    mx = int(flat.max())
    if mx <= max(4 * flat.size, 1 << 16):
        counts = np.bincount(flat.astype(np.intp, copy=False), minlength=1)
        ids = np.flatnonzero(counts[1:]) + 1
        lut = np.zeros(mx + 1, np.int64)
        lut[ids] = np.arange(1, len(ids) + 1)
        return ids.astype(np.int64), lut[flat], counts[ids].astype(np.int64)
    ids, inv, counts = np.unique(flat, return_inverse=True, return_counts=True)
    inv = inv.reshape(-1).astype(np.int64)
    if ids[0] == 0:
        return ids[1:].astype(np.int64), inv, counts[1:].astype(np.int64)
    return ids.astype(np.int64), inv + 1, counts.astype(np.int64)


@dataclass(frozen=True)
class Overlap:
    """Sparse overlap of two label images: only pairs that share pixels are stored."""

    gt_ids: np.ndarray  # (n_gt,) label ids, ascending
    pred_ids: np.ndarray  # (n_pred,)
    gt_area: np.ndarray  # (n_gt,) pixels
    pred_area: np.ndarray  # (n_pred,)
    gi: np.ndarray  # (n_pairs,) index into gt_ids
    pj: np.ndarray  # (n_pairs,) index into pred_ids
    inter: np.ndarray  # (n_pairs,) shared pixels

    @property
    def n_gt(self) -> int:
        return len(self.gt_ids)

    @property
    def n_pred(self) -> int:
        return len(self.pred_ids)

    @property
    def iou(self) -> np.ndarray:
        union = self.gt_area[self.gi] + self.pred_area[self.pj] - self.inter
        return self.inter / union.astype(np.float64)

    def dense_iou(self) -> np.ndarray:
        out = np.zeros((self.n_gt, self.n_pred), np.float64)
        out[self.gi, self.pj] = self.iou
        return out


def overlap(gt: np.ndarray, pred: np.ndarray) -> Overlap:
    gt_ids, g, gt_area = _index_labels(gt)
    pred_ids, p, pred_area = _index_labels(pred)
    n_g, n_p = len(gt_ids), len(pred_ids)
    both = (g > 0) & (p > 0)
    codes = (g[both] - 1) * n_p + (p[both] - 1)
    if n_g * n_p <= _DENSE_HIST_MAX:
        hist = np.bincount(codes, minlength=n_g * n_p)
        pair = np.flatnonzero(hist)
        inter = hist[pair]
    else:
        pair, inter = np.unique(codes, return_counts=True)
    if n_p:
        gi, pj = np.divmod(pair, n_p)
    else:
        gi = pj = np.zeros(0, np.int64)
    return Overlap(
        gt_ids, pred_ids, gt_area, pred_area, gi.astype(np.int64), pj.astype(np.int64), inter.astype(np.int64)
    )


def check_tie(tie: str) -> None:
    if tie not in ("ge", "gt"):
        raise ValueError(f"tie must be 'ge' (IoU >= t) or 'gt' (IoU > t), got {tie!r}")


def _nominal(thresh: float) -> float:
    return float(np.round(float(thresh), 10))


def match_overlap(ov: Overlap, thresh: float, tie: str) -> tuple[int, float]:
    """One-to-one matching at one threshold. Returns (tp, sum of matched IoUs)."""
    check_tie(tie)
    n_g, n_p = ov.n_gt, ov.n_pred
    if n_g == 0 or n_p == 0:
        return 0, 0.0
    iou = ov.iou
    if thresh < 0 or (thresh == 0 and tie == "ge"):
        # every pair passes, including pairs that do not overlap (stardist's thresh=0)
        dense = ov.dense_iou()
        r, c = linear_sum_assignment(-dense)
        return min(n_g, n_p), float(dense[r, c].sum())
    ok = iou > thresh if tie == "gt" else iou >= thresh
    gi, pj, v = ov.gi[ok], ov.pj[ok], iou[ok]
    if thresh > 0.5 or (thresh == 0.5 and tie == "gt"):
        # objects of a label image are disjoint: IoU > 0.5 pairs are unique both ways
        return len(v), float(v.sum())
    # general case: maximum number of matches, then maximum matched IoU (as stardist)
    deg_g = np.bincount(gi, minlength=n_g)
    deg_p = np.bincount(pj, minlength=n_p)
    single = (deg_g[gi] == 1) & (deg_p[pj] == 1)  # isolated pairs are always matched
    tp, total = int(single.sum()), float(v[single].sum())
    gi, pj, v = gi[~single], pj[~single], v[~single]
    if len(v):
        rows, ri = np.unique(gi, return_inverse=True)
        cols, ci = np.unique(pj, return_inverse=True)
        k = min(len(rows), len(cols))
        val = np.zeros((len(rows), len(cols)))
        val[ri, ci] = v
        cand = np.zeros(val.shape, bool)
        cand[ri, ci] = True
        # each match is worth 1, the IoU tie-break adds < 0.5 in total
        r, c = linear_sum_assignment(-(cand + val / (2.0 * k)))
        hit = cand[r, c]
        tp += int(hit.sum())
        total += float(val[r, c][hit].sum())
    return tp, total


def counts_dict(tp: int, n_g: int, n_p: int, sum_iou: float) -> dict:
    fp, fn = n_p - tp, n_g - tp
    return dict(
        tp=int(tp),
        fp=int(fp),
        fn=int(fn),
        precision=tp / (tp + fp) if tp > 0 else 0.0,
        recall=tp / (tp + fn) if tp > 0 else 0.0,
        f1=2 * tp / (2 * tp + fp + fn) if tp > 0 else 0.0,
        accuracy=tp / (tp + fp + fn) if tp > 0 else 0.0,
        mean_matched_iou=sum_iou / tp if tp > 0 else float("nan"),
        n_true=int(n_g),
        n_pred=int(n_p),
    )


# --------------------------------------------------------------------------------------------
# object matching metrics
# --------------------------------------------------------------------------------------------


def iou_matrix(gt, pred) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IoU of every ground-truth object with every predicted object.

    Computed from one joint histogram of the two label images.

    Parameters
    ----------
    gt, pred : (H, W) integer arrays
        Instance label images, 0 = background.

    Returns
    -------
    iou : (n_gt, n_pred) float64 array
        ``iou[i, j]`` is the IoU of object ``gt_ids[i]`` with object ``pred_ids[j]``.
    gt_ids, pred_ids : 1-D int64 arrays
        The label ids present in each image, ascending.

    Examples
    --------
    >>> gt = np.array([[1, 1, 0, 2]])
    >>> pred = np.array([[5, 0, 0, 7]])
    >>> iou, gt_ids, pred_ids = iou_matrix(gt, pred)
    >>> iou.tolist(), gt_ids.tolist(), pred_ids.tolist()
    ([[0.5, 0.0], [0.0, 1.0]], [1, 2], [5, 7])
    """
    ov = overlap(*check_pair(gt, pred))
    return ov.dense_iou(), ov.gt_ids, ov.pred_ids


def matching(gt, pred, thresh: float = 0.5, tie: str = "ge") -> dict:
    """One-to-one matching of objects at an IoU threshold (as ``stardist.matching``).

    For ``thresh > 0.5`` (and for ``thresh == 0.5`` with ``tie="gt"``) pairs passing the
    threshold are unique, because the objects of a label image are disjoint. Otherwise the
    matching is an optimal assignment (``scipy.optimize.linear_sum_assignment``) that
    maximises the number of matches, then the sum of matched IoUs, as stardist does.

    Parameters
    ----------
    gt, pred : (H, W) integer arrays
        Instance label images, 0 = background.
    thresh : float
        IoU threshold (rounded to 10 decimals).
    tie : {"ge", "gt"}
        ``"ge"`` matches at IoU >= thresh (stardist), ``"gt"`` at IoU > thresh (Kaggle).

    Returns
    -------
    dict
        ``tp, fp, fn, precision, recall, f1, accuracy`` (= TP / (TP + FP + FN)),
        ``mean_matched_iou`` (NaN without matches), ``n_true, n_pred``. Ratios are 0.0 when
        there is no true positive (stardist's convention, also for two empty images).

    Examples
    --------
    >>> gt = np.array([[1, 1, 0, 2, 2]])
    >>> pred = np.array([[3, 0, 0, 4, 4]])
    >>> m = matching(gt, pred, thresh=0.5)
    >>> m["tp"], m["fp"], m["fn"], m["f1"]
    (2, 0, 0, 1.0)
    >>> matching(gt, pred, thresh=0.5, tie="gt")["tp"]   # the first pair has IoU exactly 0.5
    1
    """
    ov = overlap(*check_pair(gt, pred))
    tp, s = match_overlap(ov, _nominal(thresh), tie)
    return counts_dict(tp, ov.n_gt, ov.n_pred, s)


def precision_recall_at(gt, pred, thresh: float = 0.7, tie: str = "gt") -> dict:
    """Object precision and recall at one IoU threshold (seed 004, Table 5.1: IoU 0.7).

    Seed 004 (Vuola 2019, section 4.4.4) counts a true positive when the IoU is *above*
    the threshold, hence the default ``tie="gt"``.

    Returns
    -------
    dict
        ``precision, recall, tp, fp, fn``.

    Examples
    --------
    >>> gt = np.array([[1, 1, 1, 0, 2]])
    >>> pred = np.array([[1, 1, 0, 0, 2]])
    >>> precision_recall_at(gt, pred, thresh=0.7)
    {'precision': 0.5, 'recall': 0.5, 'tp': 1, 'fp': 1, 'fn': 1}
    """
    m = matching(gt, pred, thresh=thresh, tie=tie)
    return {k: m[k] for k in ("precision", "recall", "tp", "fp", "fn")}


def _threshold_counts(ov: Overlap, thresholds, tie: str) -> np.ndarray:
    thresholds = np.atleast_1d(np.asarray(thresholds, np.float64))
    return np.array([match_overlap(ov, _nominal(t), tie)[0] for t in thresholds], np.int64)


def dsb_map_overlap(ov: Overlap, thresholds, tie: str) -> float:
    n = ov.n_gt + ov.n_pred
    if n == 0:
        return 1.0
    tp = _threshold_counts(ov, thresholds, tie)
    return float(np.mean(tp / (n - tp)))


def dsb_map(gt, pred, thresholds=DSB_THRESHOLDS, tie: str = "gt") -> float:
    """DSB2018 (Kaggle) score of one image: mean over thresholds of TP / (TP + FP + FN).

    Equal to seed 000's object-wise IoU (OW IoU) and to seed 004's mAP (eq. 4.2).

    Parameters
    ----------
    gt, pred : (H, W) integer arrays
        Instance label images, 0 = background.
    thresholds : sequence of float
        IoU thresholds, default 0.50:0.05:0.95 (rounded to 10 decimals, so
        ``np.arange(0.5, 1.0, 0.05)`` means its nominal values).
    tie : {"gt", "ge"}
        Kaggle matches at IoU > t (default); ``"ge"`` gives stardist's ``accuracy``.

    Returns
    -------
    float
        In [0, 1]. Both images empty: 1.0; exactly one empty: 0.0.

    Examples
    --------
    >>> gt = np.array([[1, 1, 0, 2, 2]])
    >>> dsb_map(gt, gt)
    1.0
    >>> dsb_map(gt, np.array([[1, 1, 0, 0, 0]]))   # one of two found: 1 / (1 + 0 + 1)
    0.5
    >>> dsb_map(np.zeros((2, 2), int), np.zeros((2, 2), int))
    1.0
    """
    check_tie(tie)
    return dsb_map_overlap(overlap(*check_pair(gt, pred)), thresholds, tie)


def dsb_map_dataset(pairs: Iterable, thresholds=DSB_THRESHOLDS, tie: str = "gt") -> float:
    """Mean over images of :func:`dsb_map` (the DSB2018 leaderboard score).

    Parameters
    ----------
    pairs : iterable of (gt, pred)
        Label image pairs.

    Returns
    -------
    float
        NaN for no images.

    Examples
    --------
    >>> a = np.array([[1, 1, 0, 2, 2]])
    >>> dsb_map_dataset([(a, a), (a, np.zeros_like(a))])
    0.5
    """
    vals = [dsb_map(g, p, thresholds=thresholds, tie=tie) for g, p in pairs]
    return float(np.mean(vals)) if vals else float("nan")


def object_f1_overlap(ov: Overlap, thresholds, tie: str) -> float:
    n = ov.n_gt + ov.n_pred
    if n == 0:
        return 1.0
    tp = _threshold_counts(ov, thresholds, tie)
    return float(np.mean(2 * tp / n))


def object_f1_avg(gt, pred, thresholds=DSB_THRESHOLDS, tie: str = "gt") -> float:
    """Object-wise F1 averaged over IoU thresholds (seed 000, "OW F1").

    Seed 000 (section 5.3) counts TP, FP and FN per IoU threshold 0.5..0.95 "analogous to
    the calculation of COCO AP" with a TP when IoU is *above* the threshold, computes
    F1 = 2 TP / (2 TP + FP + FN) (its eq. 12) per threshold and averages the results (the
    text says 11 thresholds, but 0.5..0.95 in steps of 0.05 are 10). Its object-wise IoU
    (OW IoU, eq. 11) is TP / (TP + FP + FN) averaged the same way, i.e. :func:`dsb_map`.

    Returns
    -------
    float
        The mean F1, in [0, 1] (1.0 when both images are empty, 0.0 when only one is).

    Examples
    --------
    >>> round(object_f1_avg(np.array([[1, 1, 0, 2, 2]]), np.array([[1, 1, 0, 0, 0]])), 4)   # 2*1 / (2*1 + 0 + 1)
    0.6667
    """
    check_tie(tie)
    return object_f1_overlap(overlap(*check_pair(gt, pred)), thresholds, tie)
