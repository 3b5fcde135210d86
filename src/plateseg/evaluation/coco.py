"""COCO mask AP (AP, AP50, AP75, AP_S/M/L; seed 002), bit-identical to pycocotools' COCOeval for
instance label images.

Examples
--------
>>> import numpy as np
>>> gt = np.zeros((8, 8), int); gt[:4, :4] = 1
>>> round(coco_mask_ap([gt], [gt])["AP"], 3)
1.0
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from plateseg.evaluation.matching import Overlap, check_pair, overlap

__all__ = ["COCO_IOU_THRESHOLDS", "COCO_RECALL_THRESHOLDS", "COCO_AREA_RANGES", "COCO_MAX_DETS", "coco_mask_ap", "dataset_scores", "coco_eval_overlap", "coco_accumulate", "scores_for"]

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


# --------------------------------------------------------------------------------------------
# COCO mask AP
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CocoImage:
    dt_scores: np.ndarray  # (D,) sorted descending (stable), truncated to max_dets
    dtm: np.ndarray  # (A, T, D) bool: matched
    dt_ig: np.ndarray  # (A, T, D) bool: ignored
    gt_ig: np.ndarray  # (A, G) bool: ignored


def scores_for(pred_ids: np.ndarray, scores) -> np.ndarray:
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


def coco_eval_overlap(ov: Overlap, scores: np.ndarray, max_dets: int) -> _CocoImage | None:
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


def coco_accumulate(images: Sequence[_CocoImage | None]) -> dict:
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


def dataset_scores(gts: Sequence, preds: Sequence, scores=None) -> list:
    """The per-image score entries of a dataset (None per image when there are none), checked for length.

    Examples
    --------
    >>> dataset_scores([1, 2], [3, 4])
    [None, None]
    """
    if len(gts) != len(preds):
        raise ValueError(f"got {len(gts)} ground truth and {len(preds)} predicted images")
    if scores is None:
        scores = [None] * len(gts)
    if len(scores) != len(gts):
        raise ValueError(f"got {len(scores)} score entries for {len(gts)} images")
    return list(scores)


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
    scores = dataset_scores(gts, preds, scores)
    images = []
    for g, p, s in zip(gts, preds, scores):
        ov = overlap(*check_pair(g, p))
        images.append(coco_eval_overlap(ov, scores_for(ov.pred_ids, s), int(max_dets)))
    return coco_accumulate(images)
