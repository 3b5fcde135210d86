"""Segmentation metrics for instance label images (DESIGN.md section 5).

Every public function is pure: it takes 2-D integer label images (``0`` is background, any
other value is one object; ids need not be sequential) and returns numbers or dicts of
numbers. ``gt`` is the ground truth, ``pred`` the prediction.

The overlap of all object pairs is computed once per image pair from a joint histogram of
the two label images (sparse: only pairs that share pixels are kept), so images with
thousands of objects are cheap; no function loops over per-object pixel masks.

IoU values are ratios of integer pixel counts computed in float64 and compared with the
*nominal* threshold (``0.7`` means the double nearest to 0.7; thresholds such as
``np.arange(0.5, 1.0, 0.05)`` are rounded to 10 decimals first), so an IoU of exactly
``t`` is a tie and the ``tie`` rule decides:

* ``tie="ge"``: a pair matches at IoU >= t (``stardist.matching`` and COCO's rule).
* ``tie="gt"``: a pair matches at IoU > t (Kaggle DSB2018 rule, and "above the threshold"
  in seeds 000, 001 and 004).

``stardist.matching`` rounds IoU (and, under NumPy 2, the threshold) to float32; for
thresholds on a 0.05 grid that cannot change a comparison unless the union of a pair exceeds
~800,000 pixels, so ``tie="ge"`` reproduces its counts, exact ties (IoU = 7/10 at 0.7)
included.

Metrics (DESIGN.md section 5):

* :func:`iou_matrix`, :func:`matching`, :func:`precision_recall_at`
* :func:`dsb_map`, :func:`dsb_map_dataset` (DSB2018 / Kaggle mAP)
* :func:`coco_mask_ap` (COCO mask AP, AP50, AP75, AP_S/M/L; seed 002)
* :func:`over_under_segmentation` (seed 004, Table 5.1)
* :func:`dice`, :func:`pixel_iou`, :func:`pixel_f1`, :func:`object_f1_avg` (seed 000)
* :func:`instance_error` (seed 003), :func:`boundary_dice` (seed 001)
* :func:`evaluate_pair`, :func:`summarize_rows`, :func:`evaluate_dataset`
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.optimize import linear_sum_assignment

__all__ = [
    "DSB_THRESHOLDS",
    "COCO_IOU_THRESHOLDS",
    "COCO_RECALL_THRESHOLDS",
    "COCO_AREA_RANGES",
    "COCO_MAX_DETS",
    "iou_matrix",
    "matching",
    "precision_recall_at",
    "dsb_map",
    "dsb_map_dataset",
    "coco_mask_ap",
    "over_under_segmentation",
    "dice",
    "pixel_iou",
    "pixel_f1",
    "object_f1_avg",
    "instance_error",
    "boundary_dice",
    "evaluate_pair",
    "summarize_rows",
    "evaluate_dataset",
]

#: IoU thresholds 0.50:0.05:0.95 of the DSB2018 mAP and of seed 000's object-wise metrics.
DSB_THRESHOLDS = np.round(np.arange(0.5, 1.0, 0.05), 10)
#: COCO's IoU thresholds, bit-identical to pycocotools (``np.linspace``; 0.9 is 0.8999999999999999).
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
#: COCO's 101 recall points of the interpolated precision-recall curve.
COCO_RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
#: COCO's object area ranges in pixels (both ends inclusive, as in pycocotools).
COCO_AREA_RANGES = {
    "all": (0.0, 1e5**2),
    "S": (0.0, 32.0**2),
    "M": (32.0**2, 96.0**2),
    "L": (96.0**2, 1e5**2),
}
#: Detections kept per image for COCO AP (pycocotools' default of 100 is too low for dense nuclei).
COCO_MAX_DETS = 1000

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


def _check_pair(gt, pred) -> tuple[np.ndarray, np.ndarray]:
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
class _Overlap:
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


def _overlap(gt: np.ndarray, pred: np.ndarray) -> _Overlap:
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
    return _Overlap(
        gt_ids, pred_ids, gt_area, pred_area, gi.astype(np.int64), pj.astype(np.int64), inter.astype(np.int64)
    )


def _check_tie(tie: str) -> None:
    if tie not in ("ge", "gt"):
        raise ValueError(f"tie must be 'ge' (IoU >= t) or 'gt' (IoU > t), got {tie!r}")


def _nominal(thresh: float) -> float:
    return float(np.round(float(thresh), 10))


def _match(ov: _Overlap, thresh: float, tie: str) -> tuple[int, float]:
    """One-to-one matching at one threshold. Returns (tp, sum of matched IoUs)."""
    _check_tie(tie)
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


def _counts_dict(tp: int, n_g: int, n_p: int, sum_iou: float) -> dict:
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
    ov = _overlap(*_check_pair(gt, pred))
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
    ov = _overlap(*_check_pair(gt, pred))
    tp, s = _match(ov, _nominal(thresh), tie)
    return _counts_dict(tp, ov.n_gt, ov.n_pred, s)


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


def _threshold_counts(ov: _Overlap, thresholds, tie: str) -> np.ndarray:
    thresholds = np.atleast_1d(np.asarray(thresholds, np.float64))
    return np.array([_match(ov, _nominal(t), tie)[0] for t in thresholds], np.int64)


def _dsb_map(ov: _Overlap, thresholds, tie: str) -> float:
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
    _check_tie(tie)
    return _dsb_map(_overlap(*_check_pair(gt, pred)), thresholds, tie)


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


def _object_f1_avg(ov: _Overlap, thresholds, tie: str) -> float:
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
        In [0, 1]. Both images empty: 1.0; exactly one empty: 0.0.

    Examples
    --------
    >>> gt = np.array([[1, 1, 0, 2, 2]])
    >>> round(object_f1_avg(gt, np.array([[1, 1, 0, 0, 0]])), 4)   # 2*1 / (2*1 + 0 + 1)
    0.6667
    """
    _check_tie(tie)
    return _object_f1_avg(_overlap(*_check_pair(gt, pred)), thresholds, tie)


# --------------------------------------------------------------------------------------------
# COCO mask AP
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CocoImage:
    dt_scores: np.ndarray  # (D,) sorted descending (stable), truncated to max_dets
    dtm: np.ndarray  # (A, T, D) bool: matched
    dt_ig: np.ndarray  # (A, T, D) bool: ignored
    gt_ig: np.ndarray  # (A, G) bool: ignored


def _scores_for(pred_ids: np.ndarray, scores) -> np.ndarray:
    if scores is None:
        return np.ones(len(pred_ids), np.float64)
    if isinstance(scores, Mapping) or hasattr(scores, "index") and hasattr(scores, "loc"):
        try:
            return np.array([float(scores[int(i)]) for i in pred_ids], np.float64)
        except KeyError as e:
            raise ValueError(f"no score for predicted label {e.args[0]}") from None
    s = np.asarray(scores, np.float64).ravel()
    if len(s) != len(pred_ids):
        raise ValueError(f"got {len(s)} scores for {len(pred_ids)} predicted objects")
    return s


def _coco_eval_image(ov: _Overlap, scores: np.ndarray, max_dets: int) -> _CocoImage | None:
    """pycocotools ``COCOeval.evaluateImg`` for every area range, one category, no crowds."""
    n_g, n_p = ov.n_gt, ov.n_pred
    if n_g == 0 and n_p == 0:
        return None
    order = np.argsort(-scores, kind="mergesort")[:max_dets]
    rank = np.full(n_p, -1, np.int64)
    rank[order] = np.arange(len(order))
    keep = rank[ov.pj] >= 0
    d, g, v = rank[ov.pj[keep]], ov.gi[keep], ov.iou[keep]
    srt = np.lexsort((g, d))
    d, g, v = d[srt], g[srt], v[srt]
    D, T, A = len(order), len(COCO_IOU_THRESHOLDS), len(COCO_AREA_RANGES)
    dt_area = ov.pred_area[order]
    dtm = np.zeros((A, T, D), bool)
    dt_ig = np.zeros((A, T, D), bool)
    gt_ig = np.zeros((A, n_g), bool)
    for a, (lo, hi) in enumerate(COCO_AREA_RANGES.values()):
        gig = (ov.gt_area < lo) | (ov.gt_area > hi)
        gt_ig[a] = gig
        for t, thr in enumerate(COCO_IOU_THRESHOLDS):
            c = v >= min(thr, 1 - 1e-10)
            cd, cg, cv = d[c], g[c], v[c]
            if len(cd) == len(np.unique(cd)) and len(cg) == len(np.unique(cg)):
                dtm[a, t, cd] = True
                dt_ig[a, t, cd] = gig[cg]
                continue
            # ambiguous candidates (exact IoU ties): pycocotools' greedy loop. Detections in
            # score order take the unmatched gt with the highest IoU, non-ignored gts first,
            # equal IoU -> the later gt.
            taken = np.zeros(n_g, bool)
            starts = np.flatnonzero(np.r_[True, cd[1:] != cd[:-1]])
            ends = np.r_[starts[1:], len(cd)]
            for s, e in zip(starts.tolist(), ends.tolist()):
                best, key = -1, None
                for gg, vv in zip(cg[s:e].tolist(), cv[s:e].tolist()):
                    if taken[gg]:
                        continue
                    k = (not gig[gg], vv, gg)
                    if key is None or k > key:
                        best, key = gg, k
                if best >= 0:
                    taken[best] = True
                    dtm[a, t, cd[s]] = True
                    dt_ig[a, t, cd[s]] = gig[best]
        out = (dt_area < lo) | (dt_area > hi)
        dt_ig[a] |= ~dtm[a] & out[None, :]
    return _CocoImage(scores[order], dtm, dt_ig, gt_ig)


def _coco_accumulate(images: Sequence[_CocoImage | None]) -> dict:
    """pycocotools ``COCOeval.accumulate`` + the AP part of ``summarize``."""
    E = [e for e in images if e is not None]
    T, R, A = len(COCO_IOU_THRESHOLDS), len(COCO_RECALL_THRESHOLDS), len(COCO_AREA_RANGES)
    precision = -np.ones((T, R, A))
    if E:
        scores = np.concatenate([e.dt_scores for e in E])
        inds = np.argsort(-scores, kind="mergesort")
        for a in range(A):
            npig = sum(int(np.count_nonzero(~e.gt_ig[a])) for e in E)
            if npig == 0:
                continue
            dtm = np.concatenate([e.dtm[a] for e in E], axis=1)[:, inds]
            dt_ig = np.concatenate([e.dt_ig[a] for e in E], axis=1)[:, inds]
            tp_sum = np.cumsum(dtm & ~dt_ig, axis=1).astype(float)
            fp_sum = np.cumsum(~dtm & ~dt_ig, axis=1).astype(float)
            nd = tp_sum.shape[1]
            for t in range(T):
                tp, fp = tp_sum[t], fp_sum[t]
                rc = tp / npig
                pr = tp / (fp + tp + np.spacing(1))
                pr = np.maximum.accumulate(pr[::-1])[::-1]
                q = np.zeros(R)
                idx = np.searchsorted(rc, COCO_RECALL_THRESHOLDS, side="left")
                ok = idx < nd
                q[ok] = pr[idx[ok]]
                precision[t, :, a] = q

    def _mean(p):
        p = p[p > -1]
        return float(np.mean(p)) if p.size else float("nan")

    t50 = np.flatnonzero(COCO_IOU_THRESHOLDS == 0.5)
    t75 = np.flatnonzero(COCO_IOU_THRESHOLDS == 0.75)
    return dict(
        AP=_mean(precision[:, :, 0]),
        AP50=_mean(precision[t50, :, 0]),
        AP75=_mean(precision[t75, :, 0]),
        AP_S=_mean(precision[:, :, 1]),
        AP_M=_mean(precision[:, :, 2]),
        AP_L=_mean(precision[:, :, 3]),
    )


def coco_mask_ap(gts: Sequence, preds: Sequence, scores=None, max_dets: int = COCO_MAX_DETS) -> dict:
    """COCO mask average precision over a list of images (seed 002), single category.

    A re-implementation of ``pycocotools.cocoeval.COCOeval`` with ``iouType="segm"`` that
    gives the same numbers: detections sorted by score (stable), at most ``max_dets`` per
    image; per IoU threshold 0.50:0.05:0.95 a greedy match in score order (IoU >= t, the
    best-IoU unmatched ground truth); ground truths outside an area range are ignored, as
    are unmatched detections outside it; precision is made monotone and sampled at the 101
    recall points 0:0.01:1; AP is the mean over thresholds and recall points. No crowd
    regions. Areas are pixel counts; small < 32**2 <= medium <= 96**2 < large (ends
    inclusive like pycocotools).

    Parameters
    ----------
    gts, preds : sequences of (H, W) integer arrays
        Ground truth and predicted label images, one pair per image.
    scores : None or sequence
        One entry per image: None (all predictions score 1.0), a mapping
        ``{label id: score}`` (dict or pandas Series), or an array aligned with the sorted
        predicted label ids. With equal scores the order is ascending label id (then image
        order across images), which is what pycocotools does with annotations listed in
        that order.
    max_dets : int
        Detections kept per image, default :data:`COCO_MAX_DETS` = 1000 (pycocotools'
        default 100 is too low for dense nuclei images; set ``params.maxDets`` to compare).

    Returns
    -------
    dict
        ``AP, AP50, AP75, AP_S, AP_M, AP_L``. NaN where pycocotools reports -1 (no ground
        truth object in that area range).

    Examples
    --------
    >>> gt = np.array([[1, 1, 0, 2, 2]])
    >>> ap = coco_mask_ap([gt], [gt])
    >>> ap["AP"], ap["AP50"], ap["AP_S"], ap["AP_M"]
    (1.0, 1.0, 1.0, nan)
    """
    if len(gts) != len(preds):
        raise ValueError(f"got {len(gts)} ground truth and {len(preds)} predicted images")
    if scores is None:
        scores = [None] * len(gts)
    if len(scores) != len(gts):
        raise ValueError(f"got {len(scores)} score entries for {len(gts)} images")
    images = []
    for g, p, s in zip(gts, preds, scores):
        ov = _overlap(*_check_pair(g, p))
        images.append(_coco_eval_image(ov, _scores_for(ov.pred_ids, s), int(max_dets)))
    return _coco_accumulate(images)


# --------------------------------------------------------------------------------------------
# over / under segmentation, instance error
# --------------------------------------------------------------------------------------------


def _over_under(ov: _Overlap, thresh: float) -> tuple[int, int, np.ndarray]:
    """(over, under, under-segmenting pair mask over the sparse pairs)."""
    # over: pred piece lies mostly inside one gt nucleus
    piece = ov.inter >= thresh * ov.pred_area[ov.pj]
    n_pieces = np.bincount(ov.gi[piece], minlength=ov.n_gt)
    over = int(np.count_nonzero(n_pieces >= 2))
    # under: gt nucleus mostly covered by one predicted object
    covered = ov.inter >= thresh * ov.gt_area[ov.gi]
    n_covered = np.bincount(ov.pj[covered], minlength=ov.n_pred)
    merged_pred = n_covered >= 2
    under = int(np.count_nonzero(merged_pred))
    return over, under, covered & merged_pred[ov.pj]


def over_under_segmentation(gt, pred, thresh: float = 0.5) -> dict:
    """Counts of over- and under-segmentation errors (seed 004, Table 5.1 "oseg"/"useg").

    Seed 004 (Vuola 2019, section 4.4.4 and Fig. 4.8) defines them only in words:
    "Undersegmentation occurs when multiple nuclei are detected as one unified nucleus, and
    oversegmentation when a single nucleus is segmented into multiple smaller nuclei", and
    reports them next to precision/recall at IoU 0.7 without a formula. Made precise here,
    independent of any IoU threshold:

    * **over**: the number of ground-truth nuclei ``g`` that contain at least two predicted
      objects ``p`` each lying mostly inside ``g``: ``|p & g| >= thresh * |p|``.
    * **under**: the number of predicted objects ``p`` that cover at least two ground-truth
      nuclei ``g`` each mostly: ``|p & g| >= thresh * |g|``.

    The definitions are mirror images: ``over(gt, pred) == under(pred, gt)``. A nucleus
    split in three counts once; a blob merging three nuclei counts once.

    Parameters
    ----------
    gt, pred : (H, W) integer arrays
        Instance label images, 0 = background.
    thresh : float
        Fraction of the piece (over) or of the nucleus (under) that must be shared; 0.5
        means "mostly". Must be > 0.

    Returns
    -------
    dict
        ``{"over": int, "under": int}``.

    Examples
    --------
    >>> gt = np.array([[1, 1, 1, 1, 0, 2, 2, 0, 3, 3]])
    >>> pred = np.array([[4, 4, 5, 5, 0, 6, 6, 6, 6, 6]])   # 1 split in two, 2 and 3 merged
    >>> over_under_segmentation(gt, pred)
    {'over': 1, 'under': 1}
    """
    if not thresh > 0:
        raise ValueError("thresh must be > 0")
    over, under, _ = _over_under(_overlap(*_check_pair(gt, pred)), float(thresh))
    return {"over": over, "under": under}


def _touching_ids(lab: np.ndarray) -> np.ndarray:
    """Label ids that touch another label (8-neighbourhood)."""
    if lab.ndim != 2:
        raise ValueError("instance_error needs a 2-D label image")
    found = []
    for a, b in (
        (lab[1:, :], lab[:-1, :]),
        (lab[:, 1:], lab[:, :-1]),
        (lab[1:, 1:], lab[:-1, :-1]),
        (lab[1:, :-1], lab[:-1, 1:]),
    ):
        m = (a > 0) & (b > 0) & (a != b)
        found += [a[m], b[m]]
    return np.unique(np.concatenate(found)).astype(np.int64) if found else np.zeros(0, np.int64)


def _instance_error_counts(gt: np.ndarray, ov: _Overlap, thresh: float) -> tuple[int, int]:
    touching = np.isin(ov.gt_ids, _touching_ids(gt))
    _, _, merged_pairs = _over_under(ov, thresh)
    merged_gt = np.zeros(ov.n_gt, bool)
    merged_gt[ov.gi[merged_pairs]] = True
    return int(np.count_nonzero(touching & merged_gt)), int(np.count_nonzero(touching))


def instance_error(gt, pred, thresh: float = 0.5, return_counts: bool = False):
    """Fraction of touching nuclei that the prediction fails to separate (seed 003).

    Seed 003 (section 5.1) defines the instance error as ``sum I_error / sum I_all``, where
    ``I_error`` "is the number of instances that are not correctly separated" and ``I_all``
    "is the total number of touching instances". Made precise here:

    * a ground-truth nucleus is *touching* if one of its pixels is 8-adjacent to a pixel of
      another ground-truth nucleus;
    * a touching nucleus ``g`` is *not correctly separated* if a predicted object covers
      most of it (``|p & g| >= thresh * |g|``) and equally covers at least one other
      ground-truth nucleus, i.e. ``g`` takes part in an under-segmentation as defined in
      :func:`over_under_segmentation`. Missed or split nuclei are not separation errors.

    For a dataset use the ratio of sums, not the mean of ratios: pass
    ``return_counts=True`` and add up.

    Parameters
    ----------
    gt, pred : (H, W) integer arrays
        Instance label images, 0 = background.
    thresh : float
        Coverage fraction, as in :func:`over_under_segmentation`.
    return_counts : bool
        Return ``(n_error, n_touching)`` instead of the ratio.

    Returns
    -------
    float or (int, int)
        ``n_error / n_touching``; NaN if no ground-truth nuclei touch.

    Examples
    --------
    >>> gt = np.array([[1, 1, 2, 2, 0, 3, 3, 4, 4]])
    >>> pred = np.array([[5, 5, 5, 5, 0, 6, 6, 7, 7]])   # 1+2 merged, 3 and 4 separated
    >>> instance_error(gt, pred)
    0.5
    >>> instance_error(gt, pred, return_counts=True)
    (2, 4)
    """
    gt, pred = _check_pair(gt, pred)
    n_err, n_touch = _instance_error_counts(gt, _overlap(gt, pred), float(thresh))
    if return_counts:
        return n_err, n_touch
    return n_err / n_touch if n_touch else float("nan")


# --------------------------------------------------------------------------------------------
# pixel metrics
# --------------------------------------------------------------------------------------------


def _fg_counts(ov: _Overlap) -> tuple[int, int, int]:
    return int(ov.inter.sum()), int(ov.gt_area.sum()), int(ov.pred_area.sum())


def _dice_from(inter: int, a: int, b: int) -> float:
    return 2.0 * inter / (a + b) if a + b else 1.0


def _iou_from(inter: int, a: int, b: int) -> float:
    return inter / (a + b - inter) if a + b else 1.0


def dice(gt, pred) -> float:
    """Dice coefficient of the binary foregrounds, ``2 |X & Y| / (|X| + |Y|)``.

    Seed 004 eq. 4.3 (and seed 001's Dice): X, Y are the foreground (label > 0) pixels of
    ``gt`` and ``pred``. Both empty: 1.0.

    Examples
    --------
    >>> dice(np.array([[1, 1, 0, 0]]), np.array([[0, 3, 3, 0]]))
    0.5
    """
    gt, pred = _check_pair(gt, pred)
    a, b = gt > 0, pred > 0
    return _dice_from(int(np.count_nonzero(a & b)), int(a.sum()), int(b.sum()))


def pixel_iou(gt, pred) -> float:
    """Pixel-wise IoU of the binary foregrounds, TP / (TP + FP + FN) (seed 000, eq. 11).

    Both empty: 1.0.

    Examples
    --------
    >>> pixel_iou(np.array([[1, 1, 0, 0]]), np.array([[0, 3, 3, 0]]))
    0.3333333333333333
    """
    gt, pred = _check_pair(gt, pred)
    a, b = gt > 0, pred > 0
    return _iou_from(int(np.count_nonzero(a & b)), int(a.sum()), int(b.sum()))


def pixel_f1(gt, pred) -> float:
    """Pixel-wise F1 of the binary foregrounds, 2 TP / (2 TP + FP + FN) (seed 000, eq. 12).

    Identical to :func:`dice` by definition; provided under seed 000's name.

    Examples
    --------
    >>> pixel_f1(np.array([[1, 1, 0, 0]]), np.array([[0, 3, 3, 0]]))
    0.5
    """
    return dice(gt, pred)


def _boundary_band(lab: np.ndarray, width: int) -> np.ndarray:
    from skimage.segmentation import find_boundaries

    band = find_boundaries(lab, connectivity=1, mode="inner", background=0)
    if width > 1:
        band = ndi.binary_dilation(band, structure=np.ones((width,) * lab.ndim, bool))
    return band


def boundary_dice(gt, pred, width: int = 7) -> float:
    """Dice of the object boundaries within a tolerance band (seed 001).

    Seed 001 (Beker et al., "Evaluating the Performance on the Boundaries") extracts cell
    boundaries "using canny edge detection and then dilate[s] the result using a 7x7
    kernel" and reports the Dice coefficient there. Here, for instance labels:

    1. boundary pixels = object pixels with a 4-neighbour of another label or background
       (``skimage.segmentation.find_boundaries(mode="inner")``; unlike Canny on a binary
       mask this includes the line between two touching nuclei);
    2. each boundary map is dilated with a ``width x width`` square (7x7 as in the seed);
    3. the result is the Dice ``2 |Bg & Bp| / (|Bg| + |Bp|)`` of the two bands.

    Both images without objects: 1.0.

    Parameters
    ----------
    gt, pred : (H, W) integer arrays
        Instance label images, 0 = background.
    width : int
        Side of the square dilation kernel (tolerance band ~ width pixels); 1 = no dilation.

    Examples
    --------
    >>> gt = np.zeros((12, 12), int); gt[3:9, 3:9] = 1
    >>> boundary_dice(gt, gt)
    1.0
    >>> boundary_dice(gt, np.zeros_like(gt))
    0.0
    """
    gt, pred = _check_pair(gt, pred)
    bg, bp = _boundary_band(gt, int(width)), _boundary_band(pred, int(width))
    return _dice_from(int(np.count_nonzero(bg & bp)), int(bg.sum()), int(bp.sum()))


# --------------------------------------------------------------------------------------------
# one row per image, summaries
# --------------------------------------------------------------------------------------------

#: per-image columns that are counts: summed in :func:`summarize_rows`
_COUNT_COLUMNS = (
    "n_true",
    "n_pred",
    "tp_50",
    "fp_50",
    "fn_50",
    "tp_70",
    "fp_70",
    "fn_70",
    "over",
    "under",
    "n_touching",
    "n_touching_error",
)


def _evaluate_ov(gt, pred, ov: _Overlap, scores, tie: str, max_dets: int):
    tp50, s50 = _match(ov, 0.5, tie)
    tp70, _ = _match(ov, 0.7, tie)
    m50 = _counts_dict(tp50, ov.n_gt, ov.n_pred, s50)
    m70 = _counts_dict(tp70, ov.n_gt, ov.n_pred, 0.0)
    inter, a, b = _fg_counts(ov)
    over, under, _ = _over_under(ov, 0.5)
    n_err, n_touch = _instance_error_counts(gt, ov, 0.5)
    coco_img = _coco_eval_image(ov, _scores_for(ov.pred_ids, scores), max_dets)
    coco = _coco_accumulate([coco_img])
    row = dict(
        n_true=ov.n_gt,
        n_pred=ov.n_pred,
        dsb_map=_dsb_map(ov, DSB_THRESHOLDS, tie),
        object_f1_avg=_object_f1_avg(ov, DSB_THRESHOLDS, tie),
        tp_50=m50["tp"],
        fp_50=m50["fp"],
        fn_50=m50["fn"],
        precision_50=m50["precision"],
        recall_50=m50["recall"],
        f1_50=m50["f1"],
        mean_matched_iou_50=m50["mean_matched_iou"],
        tp_70=m70["tp"],
        fp_70=m70["fp"],
        fn_70=m70["fn"],
        precision_70=m70["precision"],
        recall_70=m70["recall"],
        dice=_dice_from(inter, a, b),
        pixel_iou=_iou_from(inter, a, b),
        boundary_dice=boundary_dice(gt, pred),
        over=over,
        under=under,
        n_touching=n_touch,
        n_touching_error=n_err,
        instance_error=n_err / n_touch if n_touch else float("nan"),
        coco_ap=coco["AP"],
        coco_ap50=coco["AP50"],
        coco_ap75=coco["AP75"],
    )
    return row, coco_img


def evaluate_pair(gt, pred, scores=None, tie: str = "gt", max_dets: int = COCO_MAX_DETS) -> dict:
    """All per-image metrics of one label image pair, as one flat row.

    The overlap is computed once and shared by all metrics.

    Parameters
    ----------
    gt, pred : (H, W) integer arrays
        Instance label images, 0 = background.
    scores : None, mapping or array
        Detection scores for the per-image COCO AP (see :func:`coco_mask_ap`).
    tie : {"gt", "ge"}
        Tie rule of the object metrics (``dsb_map``, ``object_f1_avg``, ``*_50``,
        ``*_70``). The default "gt" is the rule of Kaggle and seeds 000/001/004; "ge"
        reproduces stardist.
    max_dets : int
        COCO detections per image.

    Returns
    -------
    dict
        ``n_true, n_pred``; ``dsb_map`` (= seed 000's OW IoU), ``object_f1_avg``;
        at IoU 0.5: ``tp_50, fp_50, fn_50, precision_50, recall_50, f1_50,
        mean_matched_iou_50``; at IoU 0.7 (seed 004): ``tp_70, fp_70, fn_70, precision_70,
        recall_70``; ``dice`` (= pixel F1), ``pixel_iou``, ``boundary_dice`` (7x7);
        ``over, under`` (fraction 0.5); ``n_touching, n_touching_error, instance_error``;
        per-image COCO ``coco_ap, coco_ap50, coco_ap75`` (NaN without ground truth).

    Examples
    --------
    >>> gt = np.array([[1, 1, 0, 2, 2]])
    >>> row = evaluate_pair(gt, gt)
    >>> row["dsb_map"], row["f1_50"], row["over"], row["coco_ap"]
    (1.0, 1.0, 0, 1.0)
    """
    _check_tie(tie)
    gt, pred = _check_pair(gt, pred)
    row, _ = _evaluate_ov(gt, pred, _overlap(gt, pred), scores, tie, int(max_dets))
    return row


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b else float("nan")


def summarize_rows(rows) -> dict:
    """Dataset summary of per-image rows from :func:`evaluate_pair`.

    Parameters
    ----------
    rows : list of dict or pandas.DataFrame
        One row per image. Non-numeric columns (e.g. an image name) are ignored.

    Returns
    -------
    dict
        ``n_images``; ``mean_<metric>`` for every numeric column (NaN-skipping mean over
        images; the DSB2018 score is ``mean_dsb_map``); ``total_<count>`` for the count
        columns (tp/fp/fn at 0.5 and 0.7, n_true, n_pred, over, under, n_touching,
        n_touching_error); pooled ratios from the totals: ``pooled_precision_50``,
        ``pooled_recall_50``, ``pooled_f1_50``, ``pooled_precision_70``,
        ``pooled_recall_70``, and ``pooled_instance_error`` (seed 003's sum / sum).
        COCO AP over all images needs the label images: see :func:`evaluate_dataset`.

    Examples
    --------
    >>> a = np.array([[1, 1, 0, 2, 2]])
    >>> s = summarize_rows([evaluate_pair(a, a), evaluate_pair(a, 0 * a)])
    >>> s["n_images"], s["mean_dsb_map"], s["total_tp_50"], s["pooled_recall_50"]
    (2, 0.5, 2, 0.5)
    """
    import pandas as pd

    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    out: dict = {"n_images": int(len(df))}
    num = df.select_dtypes(include=[np.number, "bool"])
    for col in num.columns:
        if col in _COUNT_COLUMNS:
            continue
        vals = num[col].to_numpy(np.float64)
        out[f"mean_{col}"] = float(np.nanmean(vals)) if np.any(~np.isnan(vals)) else float("nan")
    tot = {c: int(df[c].sum()) if c in df else 0 for c in _COUNT_COLUMNS}
    for c in _COUNT_COLUMNS:
        if c in df:
            out[f"total_{c}"] = tot[c]
    for t in ("50", "70"):
        tp, fp, fn = tot[f"tp_{t}"], tot[f"fp_{t}"], tot[f"fn_{t}"]
        out[f"pooled_precision_{t}"] = _ratio(tp, tp + fp)
        out[f"pooled_recall_{t}"] = _ratio(tp, tp + fn)
        if t == "50":
            out["pooled_f1_50"] = _ratio(2 * tp, 2 * tp + fp + fn)
    out["pooled_instance_error"] = _ratio(tot["n_touching_error"], tot["n_touching"])
    return out


def evaluate_dataset(
    gts: Sequence,
    preds: Sequence,
    scores=None,
    names: Sequence | None = None,
    tie: str = "gt",
    max_dets: int = COCO_MAX_DETS,
):
    """Evaluate a list of image pairs: a per-image table and a dataset summary.

    Each pair's overlap is computed once and used for the per-image row and for the
    dataset-level COCO AP.

    Parameters
    ----------
    gts, preds : sequences of (H, W) integer arrays
        Ground truth and predicted label images.
    scores : None or sequence
        Per-image detection scores (see :func:`coco_mask_ap`).
    names : sequence of str, optional
        Image names, stored in an ``image`` column.
    tie, max_dets
        As in :func:`evaluate_pair`.

    Returns
    -------
    per_image : pandas.DataFrame
        One :func:`evaluate_pair` row per image.
    summary : dict
        :func:`summarize_rows` of the table plus COCO mask AP over all images:
        ``coco_AP, coco_AP50, coco_AP75, coco_AP_S, coco_AP_M, coco_AP_L`` and
        ``coco_max_dets``.

    Examples
    --------
    >>> a = np.array([[1, 1, 0, 2, 2]])
    >>> table, summary = evaluate_dataset([a, a], [a, 0 * a], names=["x", "y"])
    >>> table["dsb_map"].tolist(), summary["mean_dsb_map"], round(summary["coco_AP50"], 4)
    ([1.0, 0.0], 0.5, 0.505)
    """
    import pandas as pd

    _check_tie(tie)
    if len(gts) != len(preds):
        raise ValueError(f"got {len(gts)} ground truth and {len(preds)} predicted images")
    if scores is None:
        scores = [None] * len(gts)
    if len(scores) != len(gts):
        raise ValueError(f"got {len(scores)} score entries for {len(gts)} images")
    rows, coco_imgs = [], []
    for i, (g, p, s) in enumerate(zip(gts, preds, scores)):
        g, p = _check_pair(g, p)
        row, ci = _evaluate_ov(g, p, _overlap(g, p), s, tie, int(max_dets))
        if names is not None:
            row = {"image": names[i], **row}
        rows.append(row)
        coco_imgs.append(ci)
    table = pd.DataFrame(rows)
    summary = summarize_rows(table)
    summary.update({f"coco_{k}": v for k, v in _coco_accumulate(coco_imgs).items()})
    summary["coco_max_dets"] = int(max_dets)
    return table, summary
