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

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from plateseg.evaluation.coco import (COCO_AREA_RANGES, COCO_IOU_THRESHOLDS, COCO_MAX_DETS, COCO_RECALL_THRESHOLDS,
                                      coco_accumulate, coco_eval_overlap, coco_mask_ap, dataset_scores, scores_for)
from plateseg.evaluation.matching import (DSB_THRESHOLDS, Overlap, check_pair, check_tie, counts_dict, dsb_map,
                                          dsb_map_dataset, dsb_map_overlap, iou_matrix, match_overlap, matching,
                                          object_f1_avg, object_f1_overlap, overlap, precision_recall_at)


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

# --------------------------------------------------------------------------------------------
# over / under segmentation, instance error
# --------------------------------------------------------------------------------------------


def _over_under(ov: Overlap, thresh: float) -> tuple[int, int, np.ndarray]:
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
    over, under, _ = _over_under(overlap(*check_pair(gt, pred)), float(thresh))
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


def _instance_error_counts(gt: np.ndarray, ov: Overlap, thresh: float) -> tuple[int, int]:
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
    gt, pred = check_pair(gt, pred)
    n_err, n_touch = _instance_error_counts(gt, overlap(gt, pred), float(thresh))
    if return_counts:
        return n_err, n_touch
    return n_err / n_touch if n_touch else float("nan")


# --------------------------------------------------------------------------------------------
# pixel metrics
# --------------------------------------------------------------------------------------------


def _fg_counts(ov: Overlap) -> tuple[int, int, int]:
    return int(ov.inter.sum()), int(ov.gt_area.sum()), int(ov.pred_area.sum())


def _foreground_counts(gt, pred) -> tuple[int, int, int]:
    """Pixels in both foregrounds (label > 0), in ``gt``'s and in ``pred``'s."""
    gt, pred = check_pair(gt, pred)
    a, b = gt > 0, pred > 0
    return int(np.count_nonzero(a & b)), int(a.sum()), int(b.sum())


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
    return _dice_from(*_foreground_counts(gt, pred))


def pixel_iou(gt, pred) -> float:
    """Pixel-wise IoU of the binary foregrounds, TP / (TP + FP + FN) (seed 000, eq. 11); 1.0 when both are empty.

    Examples
    --------
    >>> round(pixel_iou(np.array([[1, 1, 0, 0]]), np.array([[0, 3, 3, 0]])), 4)  # 1 / (1 + 1 + 1)
    0.3333
    """
    return _iou_from(*_foreground_counts(gt, pred))


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
    gt, pred = check_pair(gt, pred)
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


def _evaluate_ov(gt, pred, ov: Overlap, scores, tie: str, max_dets: int):
    tp50, s50 = match_overlap(ov, 0.5, tie)
    tp70, _ = match_overlap(ov, 0.7, tie)
    m50 = counts_dict(tp50, ov.n_gt, ov.n_pred, s50)
    m70 = counts_dict(tp70, ov.n_gt, ov.n_pred, 0.0)
    inter, a, b = _fg_counts(ov)
    over, under, _ = _over_under(ov, 0.5)
    n_err, n_touch = _instance_error_counts(gt, ov, 0.5)
    coco_img = coco_eval_overlap(ov, scores_for(ov.pred_ids, scores), max_dets)
    coco = coco_accumulate([coco_img])
    row = dict(
        n_true=ov.n_gt,
        n_pred=ov.n_pred,
        dsb_map=dsb_map_overlap(ov, DSB_THRESHOLDS, tie),
        object_f1_avg=object_f1_overlap(ov, DSB_THRESHOLDS, tie),
    )
    at_50 = ("tp", "fp", "fn", "precision", "recall", "f1", "mean_matched_iou")
    row.update({f"{k}_50": m50[k] for k in at_50})
    row.update({f"{k}_70": m70[k] for k in at_50[:5]})
    row.update(
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
    check_tie(tie)
    gt, pred = check_pair(gt, pred)
    row, _ = _evaluate_ov(gt, pred, overlap(gt, pred), scores, tie, int(max_dets))
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

    check_tie(tie)
    scores = dataset_scores(gts, preds, scores)
    rows, coco_imgs = [], []
    for i, (g, p, s) in enumerate(zip(gts, preds, scores)):
        g, p = check_pair(g, p)
        row, ci = _evaluate_ov(g, p, overlap(g, p), s, tie, int(max_dets))
        if names is not None:
            row = {"image": names[i], **row}
        rows.append(row)
        coco_imgs.append(ci)
    table = pd.DataFrame(rows)
    summary = summarize_rows(table)
    summary.update({f"coco_{k}": v for k, v in coco_accumulate(coco_imgs).items()})
    summary["coco_max_dets"] = int(max_dets)
    return table, summary
