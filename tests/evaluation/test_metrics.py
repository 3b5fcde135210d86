"""Tests for plateseg.evaluation.metrics, checked against stardist.matching and pycocotools."""
import contextlib
import doctest
import io
import time

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi
from skimage.draw import ellipse

from plateseg.evaluation import metrics
from plateseg.evaluation.metrics import (
    boundary_dice,
    coco_mask_ap,
    dice,
    dsb_map,
    dsb_map_dataset,
    evaluate_dataset,
    evaluate_pair,
    instance_error,
    iou_matrix,
    matching,
    object_f1_avg,
    over_under_segmentation,
    pixel_f1,
    pixel_iou,
    precision_recall_at,
    summarize_rows,
)

# --------------------------------------------------------------------------------------------
# synthetic label images
# --------------------------------------------------------------------------------------------


def random_labels(rng, shape=(160, 160), n=45, big=0, huge=False):
    """Random ellipses (later ones only fill background, so neighbours touch).

    ``big`` adds medium-sized objects (radii 20-40), ``huge`` one large object (area > 96**2)
    in the centre.
    """
    lab = np.zeros(shape, np.int32)
    radii = [rng.uniform(3, 9, 2) for _ in range(n)] + [rng.uniform(20, 40, 2) for _ in range(big)]
    rng.shuffle(radii)
    if huge:
        rr, cc = ellipse(shape[0] / 2, shape[1] / 2, 62, 58, shape=shape)
        lab[rr, cc] = len(radii) + 1
    for i, (ry, rx) in enumerate(radii, start=1):
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        rr, cc = ellipse(cy, cx, ry, rx, shape=shape, rotation=rng.uniform(-np.pi, np.pi))
        free = lab[rr, cc] == 0
        lab[rr[free], cc[free]] = i
    ids = np.unique(lab)[1:]
    lut = np.zeros(lab.max() + 1, np.int32)
    lut[ids] = np.arange(1, len(ids) + 1)
    return lut[lab]


def touching_pairs(lab):
    pairs = set()
    for a, b in ((lab[1:, :], lab[:-1, :]), (lab[:, 1:], lab[:, :-1])):
        m = (a > 0) & (b > 0) & (a != b)
        pairs.update(zip(np.minimum(a[m], b[m]).tolist(), np.maximum(a[m], b[m]).tolist()))
    return sorted(pairs)


def perturb(gt, rng, extra=5):
    """A prediction: objects kept, shifted, eroded, dilated, split, missed or merged, plus extras."""
    pred = np.zeros_like(gt)
    ids = np.unique(gt)[1:]
    ops = rng.choice(
        ["keep", "shift", "erode", "dilate", "split", "drop", "shift1"],
        p=[0.3, 0.15, 0.15, 0.15, 0.1, 0.05, 0.1],
        size=len(ids),
    )
    nxt = 1
    for i, op in zip(ids, ops):
        m = gt == i
        if op == "drop":
            continue
        if op in ("shift", "shift1"):
            d = 1 if op == "shift1" else 2
            m = np.roll(m, (rng.integers(-d, d + 1), rng.integers(-d, d + 1)), axis=(0, 1))
        elif op == "erode":
            m = ndi.binary_erosion(m)
        elif op == "dilate":
            m = ndi.binary_dilation(m)
        elif op == "split":
            yy, xx = np.nonzero(m)
            ang = rng.uniform(0, np.pi)
            side = (yy - yy.mean()) * np.cos(ang) + (xx - xx.mean()) * np.sin(ang) > 0
            part = np.zeros_like(m)
            part[yy[side], xx[side]] = True
            w = part & (pred == 0)
            pred[w] = nxt
            nxt += 1
            m = m & ~part
        w = m & (pred == 0)
        pred[w] = nxt
        nxt += 1
    # merge a few touching pairs of predicted objects
    pairs = touching_pairs(pred)
    for k in rng.permutation(len(pairs))[:3]:
        a, b = pairs[k]
        pred[pred == b] = a
    # extra (false positive) objects in the background
    for _ in range(extra):
        rr, cc = ellipse(*rng.uniform(0, gt.shape), *rng.uniform(3, 7, 2), shape=gt.shape)
        free = pred[rr, cc] == 0
        pred[rr[free], cc[free]] = nxt
        nxt += 1
    return scramble(pred, rng)


def scramble(lab, rng, high=1_000_000):
    """Relabel with random, non-sequential ids (same partition)."""
    ids = np.unique(lab)[1:]
    new = rng.choice(high, size=len(ids), replace=False) + 1
    lut = np.zeros(int(lab.max()) + 1, np.int64)
    lut[ids] = new
    return lut[lab]


def tie_image():
    """Exact IoU = 0.5 cases: a half-size prediction, a merged pair, a split nucleus."""
    gt = np.zeros((40, 60), np.int32)
    pred = np.zeros_like(gt)
    gt[2:12, 2:12] = 1
    pred[2:12, 2:7] = 1  # IoU 50/100
    gt[2:12, 20:25] = 2
    gt[2:12, 25:30] = 3
    pred[2:12, 20:30] = 2  # IoU 0.5 with both 2 and 3
    gt[20:30, 2:12] = 4
    pred[20:30, 2:7] = 3
    pred[20:30, 7:12] = 4  # both halves IoU 0.5 with 4
    gt[20:30, 30:40] = 5
    pred[20:30, 30:40] = 5  # perfect
    return gt, pred


def coco_tie_image():
    """Exact IoU ties at COCO thresholds 0.55, 0.75, 0.9 and 0.5 (merged pair)."""
    gt = np.zeros((40, 80), np.int32)
    pred = np.zeros_like(gt)
    for k, n in enumerate([55, 75, 90]):
        gt[2:12, 2 + 15 * k : 12 + 15 * k] = k + 1
        sub = np.zeros((10, 10), np.int32)
        sub.ravel()[:n] = k + 1
        pred[2:12, 2 + 15 * k : 12 + 15 * k] = sub
    gt[20:30, 2:7] = 4
    gt[20:30, 7:12] = 5
    pred[20:30, 2:12] = 4
    return gt, pred


@pytest.fixture(scope="module")
def cases():
    """(gt, pred, scores) triples: random images, one with medium/large objects, tie cases."""
    rng = np.random.default_rng(2024)
    out = []
    for k in range(5):
        gt = random_labels(rng, n=int(rng.integers(20, 90)), big=3 if k == 0 else 0)
        if k % 2:
            gt = scramble(gt, rng)
        pred = perturb(gt, rng)
        out.append((gt, pred))
    big = random_labels(rng, shape=(256, 256), n=30, big=4, huge=True)
    out.append((big, perturb(big, rng)))
    out.append(tie_image())
    return out


# --------------------------------------------------------------------------------------------
# references
# --------------------------------------------------------------------------------------------


def stardist_matching(gt, pred, t):
    from stardist.matching import matching as sd_matching

    return sd_matching(gt.astype(np.int64), pred.astype(np.int64), thresh=t, criterion="iou")


def pycocotools_ap(gts, preds, scores, max_dets):
    """AP, AP50, AP75, AP_S/M/L from pycocotools' COCOeval (segm), maxDets = [max_dets]."""
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns, dets = [], [], []
    for k, (gt, pred) in enumerate(zip(gts, preds), start=1):
        images.append({"id": k, "height": gt.shape[0], "width": gt.shape[1]})
        for lid in np.unique(gt)[1:]:
            rle = mask_utils.encode(np.asfortranarray((gt == lid).astype(np.uint8)))
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": k,
                    "category_id": 1,
                    "segmentation": rle,
                    "area": float(mask_utils.area(rle)),
                    "bbox": mask_utils.toBbox(rle).tolist(),
                    "iscrowd": 0,
                }
            )
        pids = np.unique(pred)[1:]
        s = np.ones(len(pids)) if scores is None or scores[k - 1] is None else scores[k - 1]
        for lid, sc in zip(pids, s):  # ascending label order
            rle = mask_utils.encode(np.asfortranarray((pred == lid).astype(np.uint8)))
            dets.append({"image_id": k, "category_id": 1, "segmentation": rle, "score": float(sc)})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "nucleus"}]}
        coco.createIndex()
        cdt = coco.loadRes(dets)
        ev = COCOeval(coco, cdt, iouType="segm")
        ev.params.maxDets = [max_dets]
        ev.evaluate()
        ev.accumulate()
    p = ev.eval["precision"][:, :, 0, :, 0]  # T, R, A
    thr = ev.params.iouThrs

    def mean(x):
        x = x[x > -1]
        return float(np.mean(x)) if x.size else float("nan")

    return {
        "AP": mean(p[:, :, 0]),
        "AP50": mean(p[thr == 0.5, :, 0]),
        "AP75": mean(p[thr == 0.75, :, 0]),
        "AP_S": mean(p[:, :, 1]),
        "AP_M": mean(p[:, :, 2]),
        "AP_L": mean(p[:, :, 3]),
    }


# --------------------------------------------------------------------------------------------
# against stardist
# --------------------------------------------------------------------------------------------

THRESHOLDS = (0.3, 0.5, 0.7, 0.9)


def test_matching_agrees_with_stardist(cases):
    n_compared = n_exact_ties = 0
    for gt, pred in cases:
        iou = iou_matrix(gt, pred)[0]
        n_exact_ties += sum(int(np.sum(iou == t)) for t in THRESHOLDS)
        for t in THRESHOLDS:
            ours = matching(gt, pred, thresh=t, tie="ge")
            ref = stardist_matching(gt, pred, t)
            for k in ("tp", "fp", "fn", "n_true", "n_pred"):
                assert ours[k] == getattr(ref, k), (t, k)
            for k in ("precision", "recall", "f1", "accuracy"):
                assert ours[k] == pytest.approx(float(getattr(ref, k)), abs=1e-12), (t, k)
            if ours["tp"] and t >= 0.5:
                # stardist's IoUs are float32
                assert ours["mean_matched_iou"] == pytest.approx(float(ref.mean_matched_score), abs=1e-6)
            elif ours["tp"]:
                # below 0.5 the matching is not unique; among the maximum matchings we take
                # the largest matched IoU, stardist's tie-break also counts unmatched pairs
                assert ours["mean_matched_iou"] >= float(ref.mean_matched_score) - 1e-6
            n_compared += 1
    assert n_compared == len(cases) * len(THRESHOLDS)
    assert n_exact_ties > 0  # the comparison includes IoU == threshold cases


def test_dsb_map_ge_equals_mean_stardist_accuracy(cases):
    gt, pred = cases[1]
    ref = np.mean([stardist_matching(gt, pred, t).accuracy for t in (0.5, 0.75)])
    assert dsb_map(gt, pred, thresholds=[0.5, 0.75], tie="ge") == pytest.approx(ref, abs=1e-12)


def test_tie_rule_matters():
    gt, pred = tie_image()
    ge = matching(gt, pred, thresh=0.5, tie="ge")
    gt_rule = matching(gt, pred, thresh=0.5, tie="gt")
    # half-size pred, merged pair (one of the two), split (one half), perfect
    assert (ge["tp"], ge["fp"], ge["fn"]) == (4, 1, 1)
    assert (gt_rule["tp"], gt_rule["fp"], gt_rule["fn"]) == (1, 4, 4)
    ref = stardist_matching(gt, pred, 0.5)
    assert (ref.tp, ref.fp, ref.fn) == (4, 1, 1)
    assert ge["mean_matched_iou"] == pytest.approx((0.5 * 3 + 1.0) / 4)
    # the DSB score differs only through the 0.5 threshold
    d_ge, d_gt = dsb_map(gt, pred, tie="ge"), dsb_map(gt, pred, tie="gt")
    assert d_ge - d_gt == pytest.approx((4 / 6 - 1 / 9) / 10)


def test_exact_ties_at_other_thresholds_agree_with_stardist():
    gt = np.zeros((12, 12), np.int32)
    gt[1:11, 1:11] = 1
    for n, t in ((30, 0.3), (70, 0.7), (90, 0.9), (55, 0.55)):
        sub = np.zeros(100, np.int32)
        sub[:n] = 1
        pred = np.zeros_like(gt)
        pred[1:11, 1:11] = sub.reshape(10, 10)  # IoU = n/100 exactly
        assert matching(gt, pred, t, tie="ge")["tp"] == 1 == stardist_matching(gt, pred, t).tp
        assert matching(gt, pred, t, tie="gt")["tp"] == 0
        # np.arange's 0.7000000000000002 is read as 0.7
        assert dsb_map(gt, pred, thresholds=np.arange(0.3, 0.95, 0.05)[[round((t - 0.3) / 0.05)]], tie="ge") == 1.0


def test_low_threshold_uses_optimal_assignment():
    # pred 7 overlaps gt 1 (IoU 6/14) and gt 2 (4/16); pred 9 only gt 2 (4/16): at 0.25 the
    # greedy choice 7-1 ... must leave 9-2, the optimum matches both
    gt = np.zeros((1, 30), np.int32)
    pred = np.zeros_like(gt)
    gt[0, 0:10] = 1
    gt[0, 10:20] = 2
    pred[0, 4:14] = 7  # IoU 6/14 with gt1, 4/16 with gt2
    pred[0, 16:26] = 9  # IoU 4/16 with gt2
    ref = stardist_matching(gt, pred, 0.25)
    ours = matching(gt, pred, 0.25)
    assert ours["tp"] == ref.tp == 2
    assert ours["mean_matched_iou"] == pytest.approx((6 / 14 + 4 / 16) / 2)
    assert matching(gt, pred, 0.0)["tp"] == stardist_matching(gt, pred, 0.0).tp == 2


# --------------------------------------------------------------------------------------------
# against pycocotools
# --------------------------------------------------------------------------------------------


def _assert_ap_equal(ours, ref):
    for k in ("AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L"):
        if np.isnan(ref[k]):
            assert np.isnan(ours[k]), k
        else:
            assert ours[k] == pytest.approx(ref[k], abs=1e-12), k


def test_coco_ap_agrees_with_pycocotools_equal_scores(cases):
    gts = [c[0] for c in cases] + [coco_tie_image()[0]]
    preds = [c[1] for c in cases] + [coco_tie_image()[1]]
    ours = coco_mask_ap(gts, preds, max_dets=1000)
    ref = pycocotools_ap(gts, preds, None, 1000)
    _assert_ap_equal(ours, ref)
    assert 0.2 < ours["AP"] < 0.9 and not np.isnan(ours["AP_L"]) and not np.isnan(ours["AP_M"])


def test_coco_ap_agrees_with_pycocotools_scores_and_truncation(cases):
    rng = np.random.default_rng(5)
    gts = [c[0] for c in cases]
    preds = [c[1] for c in cases]
    # random scores, with repeated values so the stable sort order matters
    scores = [rng.integers(0, 5, len(np.unique(p)) - 1) / 4 for p in preds]
    for max_dets in (1000, 25):
        ours = coco_mask_ap(gts, preds, scores=scores, max_dets=max_dets)
        ref = pycocotools_ap(gts, preds, scores, max_dets)
        _assert_ap_equal(ours, ref)


def test_coco_ap_empty_images_and_ties():
    gt, pred = coco_tie_image()
    empty = np.zeros_like(gt)
    gts = [gt, empty, gt, empty]
    preds = [pred, pred, empty, empty]  # FP-only image, FN-only image, empty image
    _assert_ap_equal(coco_mask_ap(gts, preds), pycocotools_ap(gts, preds, None, 1000))
    # ties: IoU exactly 0.75 counts at AP75 (COCO's >=): dets in order FP, TP, TP, FP over
    # 5 gts -> precision 2/3 up to recall 0.4 (41 of 101 recall points), 0 beyond
    ap = coco_mask_ap([gt], [pred])
    assert ap["AP75"] == pytest.approx(41 / 101 * 2 / 3, abs=1.5 / 101)


def test_coco_scores_as_mapping_and_series():
    gt, pred = tie_image()
    ids = np.unique(pred)[1:]
    arr = np.linspace(0.9, 0.1, len(ids))
    a = coco_mask_ap([gt], [pred], [arr])
    b = coco_mask_ap([gt], [pred], [dict(zip(ids.tolist(), arr))])
    c = coco_mask_ap([gt], [pred], [pd.Series(arr, index=ids)])
    assert a == pytest.approx(b, nan_ok=True) and a == pytest.approx(c, nan_ok=True)
    with pytest.raises(ValueError):
        coco_mask_ap([gt], [pred], [arr[:-1]])


def test_coco_perfect_prediction():
    gt = random_labels(np.random.default_rng(1), n=30)
    ap = coco_mask_ap([gt], [gt])
    assert ap["AP"] == ap["AP50"] == ap["AP75"] == ap["AP_S"] == 1.0


# --------------------------------------------------------------------------------------------
# overlap, DSB, conventions, invariance
# --------------------------------------------------------------------------------------------


def test_iou_matrix_brute_force(cases):
    gt, pred = cases[1]
    iou, gi, pi = iou_matrix(gt, pred)
    assert gi.tolist() == np.unique(gt)[1:].tolist() and pi.tolist() == np.unique(pred)[1:].tolist()
    rng = np.random.default_rng(0)
    for i, j in zip(rng.integers(0, len(gi), 40), rng.integers(0, len(pi), 40)):
        a, b = gt == gi[i], pred == pi[j]
        assert iou[i, j] == (a & b).sum() / (a | b).sum()
    # huge label ids (np.unique path) give the same matrix
    big = np.where(gt > 0, gt.astype(np.uint64) * 4_000_000_000, 0)
    iou2, gi2, _ = iou_matrix(big, pred)
    np.testing.assert_array_equal(iou, iou2)
    assert gi2.tolist() == (gi * 4_000_000_000).tolist()


def test_dsb_map_conventions():
    gt = random_labels(np.random.default_rng(3), n=25)
    empty = np.zeros_like(gt)
    assert dsb_map(gt, gt) == 1.0
    assert dsb_map(empty, empty) == 1.0
    assert dsb_map(gt, empty) == 0.0 and dsb_map(empty, gt) == 0.0
    assert object_f1_avg(gt, gt) == 1.0 and object_f1_avg(empty, empty) == 1.0
    assert object_f1_avg(gt, empty) == 0.0
    assert dsb_map_dataset([(gt, gt), (gt, empty), (empty, empty)]) == pytest.approx(2 / 3)
    assert np.isnan(dsb_map_dataset([]))
    # np.arange thresholds are read as their nominal values
    np.testing.assert_array_equal(metrics.DSB_THRESHOLDS, np.round(np.arange(0.5, 1.0, 0.05), 10))
    m = matching(empty, empty)
    assert (m["tp"], m["fp"], m["fn"], m["f1"]) == (0, 0, 0, 0.0) and np.isnan(m["mean_matched_iou"])


def test_dsb_map_by_hand():
    gt, pred = tie_image()
    # tie="gt": only the perfect pair matches at every threshold: 1 / (1 + 4 + 4)
    assert dsb_map(gt, pred) == pytest.approx(1 / 9)
    # object F1: 2*1 / (5 + 5)
    assert object_f1_avg(gt, pred) == pytest.approx(0.2)


def test_precision_recall_at():
    gt, pred = tie_image()
    r = precision_recall_at(gt, pred, thresh=0.7)
    assert r == {"precision": 1 / 5, "recall": 1 / 5, "tp": 1, "fp": 4, "fn": 4}


def test_invariant_to_relabelling(cases):
    rng = np.random.default_rng(11)
    for gt, pred in cases[:3] + cases[-1:]:
        pids = np.unique(pred)[1:]
        scores = dict(zip(pids.tolist(), rng.permutation(len(pids)) / len(pids)))
        # permute labels of both images; carry the scores along
        gids = np.unique(gt)[1:]
        gmap = np.zeros(int(gt.max()) + 1, np.int64)
        gmap[gids] = rng.permutation(len(gids)) + 1
        new_p = rng.choice(10_000, len(pids), replace=False) + 1
        pmap = np.zeros(int(pred.max()) + 1, np.int64)
        pmap[pids] = new_p
        scores2 = {int(pmap[k]): v for k, v in scores.items()}
        a = evaluate_pair(gt, pred, scores=scores)
        b = evaluate_pair(gmap[gt], pmap[pred], scores=scores2)
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], abs=1e-12, nan_ok=True), k
        for t in THRESHOLDS:
            assert matching(gt, pred, t) == pytest.approx(matching(gmap[gt], pmap[pred], t), nan_ok=True)


# --------------------------------------------------------------------------------------------
# over/under, instance error, pixel and boundary metrics
# --------------------------------------------------------------------------------------------


def test_over_under_tiny():
    gt = np.array([[1, 1, 1, 1, 0, 2, 2, 0, 3, 3, 0, 4, 4, 4]])
    pred = np.array([[5, 5, 6, 6, 0, 7, 7, 7, 7, 7, 0, 8, 8, 8]])
    assert over_under_segmentation(gt, pred) == {"over": 1, "under": 1}
    # mirror property
    assert over_under_segmentation(pred, gt) == {"over": 1, "under": 1}
    assert over_under_segmentation(gt, gt) == {"over": 0, "under": 0}
    # a nucleus split in three counts once; a blob over three nuclei counts once
    gt3 = np.array([[1, 1, 1, 1, 1, 1, 0, 2, 2, 3, 3, 4, 4]])
    pr3 = np.array([[5, 5, 6, 6, 7, 7, 0, 8, 8, 8, 8, 8, 8]])
    assert over_under_segmentation(gt3, pr3) == {"over": 1, "under": 1}


def test_over_under_significance():
    # a neighbour's prediction spilling 1 pixel into a nucleus is not a fragment of it
    gt = np.array([[1, 1, 1, 1, 2, 2, 2, 2]])
    pred = np.array([[3, 3, 3, 4, 4, 4, 4, 4]])
    assert over_under_segmentation(gt, pred) == {"over": 0, "under": 0}
    # the merged blob covers only 1/4 of nucleus 2: not an under-segmentation at 0.5 ...
    pred2 = np.array([[3, 3, 3, 3, 3, 4, 4, 4]])
    assert over_under_segmentation(gt, pred2)["under"] == 0
    # ... but it is at a looser coverage fraction
    assert over_under_segmentation(gt, pred2, thresh=0.25)["under"] == 1
    with pytest.raises(ValueError):
        over_under_segmentation(gt, pred, thresh=0)


def test_over_under_on_perturbations():
    gt = np.zeros((30, 60), np.int32)
    gt[5:15, 5:15] = 1
    gt[5:15, 15:25] = 2  # touches 1
    gt[5:15, 35:45] = 3
    gt[20:28, 40:50] = 4
    pred = np.zeros_like(gt)
    pred[5:15, 5:25] = 1  # merges 1 and 2
    pred[5:15, 35:40] = 2
    pred[5:15, 40:45] = 3  # splits 3
    pred[20:28, 40:50] = 4
    assert over_under_segmentation(gt, pred) == {"over": 1, "under": 1}
    assert instance_error(gt, pred, return_counts=True) == (2, 2)
    assert instance_error(gt, gt) == 0.0
    assert np.isnan(instance_error(np.where(gt == 2, 0, gt), pred))  # no touching nuclei


def test_instance_error_diagonal_touch():
    gt = np.array([[1, 0, 0], [0, 2, 0], [0, 0, 0]])
    pred = np.array([[3, 0, 0], [0, 3, 0], [0, 0, 0]])
    assert instance_error(gt, pred) == 1.0
    assert instance_error(gt, gt) == 0.0


def test_pixel_metrics():
    gt = np.array([[1, 1, 2, 0, 0]])
    pred = np.array([[9, 0, 9, 9, 0]])
    assert dice(gt, pred) == pytest.approx(2 * 2 / 6)
    assert pixel_f1(gt, pred) == dice(gt, pred)
    assert pixel_iou(gt, pred) == pytest.approx(2 / 4)
    z = np.zeros((3, 3), int)
    assert dice(z, z) == 1.0 and pixel_iou(z, z) == 1.0
    assert dice(z + 1, z) == 0.0 and pixel_iou(z, z + 1) == 0.0
    # labels do not matter, only the foreground
    assert dice(gt, np.array([[5, 6, 7, 0, 0]])) == 1.0


def test_boundary_dice():
    gt = np.zeros((40, 40), np.int32)
    gt[10:30, 10:20] = 1
    gt[10:30, 20:30] = 2
    assert boundary_dice(gt, gt) == 1.0
    merged = (gt > 0).astype(np.int32)
    # the missing line between the touching nuclei costs boundary Dice but not Dice
    assert dice(gt, merged) == 1.0
    assert boundary_dice(gt, merged) < 0.95
    shifted = np.roll(gt, 1, axis=1)
    assert boundary_dice(gt, shifted, width=7) > boundary_dice(gt, shifted, width=1)
    assert boundary_dice(gt, shifted, width=1) < 0.8
    z = np.zeros_like(gt)
    assert boundary_dice(z, z) == 1.0 and boundary_dice(gt, z) == 0.0


def test_input_validation():
    a = np.zeros((3, 3), int)
    with pytest.raises(ValueError):
        matching(a, np.zeros((3, 4), int))
    with pytest.raises(TypeError):
        dsb_map(a.astype(float), a)
    with pytest.raises(ValueError):
        dsb_map(a - 1, a)
    with pytest.raises(ValueError):
        matching(a, a, tie="gte")
    # bool masks are one object
    assert matching(a == 0, a == 0)["tp"] == 1


# --------------------------------------------------------------------------------------------
# rows, summaries, dataset
# --------------------------------------------------------------------------------------------


def test_evaluate_pair_row(cases):
    gt, pred = cases[0]
    row = evaluate_pair(gt, pred)
    m50 = matching(gt, pred, 0.5, tie="gt")
    pr70 = precision_recall_at(gt, pred, 0.7)
    assert row["tp_50"] == m50["tp"] and row["f1_50"] == m50["f1"]
    assert row["precision_70"] == pr70["precision"] and row["recall_70"] == pr70["recall"]
    assert row["dsb_map"] == dsb_map(gt, pred)
    assert row["object_f1_avg"] == object_f1_avg(gt, pred)
    assert row["dice"] == dice(gt, pred) and row["pixel_iou"] == pixel_iou(gt, pred)
    assert row["boundary_dice"] == boundary_dice(gt, pred)
    assert {"over": row["over"], "under": row["under"]} == over_under_segmentation(gt, pred)
    assert (row["n_touching_error"], row["n_touching"]) == instance_error(gt, pred, return_counts=True)
    assert row["coco_ap"] == coco_mask_ap([gt], [pred])["AP"]
    assert row["over"] > 0 and row["under"] > 0 and 0 < row["dsb_map"] < 1
    assert all(isinstance(v, (int, float)) for v in row.values())
    assert evaluate_pair(gt, pred, tie="ge")["tp_50"] == stardist_matching(gt, pred, 0.5).tp


def test_evaluate_dataset_and_summary(cases):
    gts = [c[0] for c in cases]
    preds = [c[1] for c in cases]
    table, summary = evaluate_dataset(gts, preds, names=[f"img{i}" for i in range(len(gts))])
    assert list(table["image"]) == [f"img{i}" for i in range(len(gts))]
    assert len(table) == len(gts)
    assert summary["n_images"] == len(gts)
    assert summary["mean_dsb_map"] == pytest.approx(dsb_map_dataset(zip(gts, preds)))
    assert summary["total_tp_50"] == table["tp_50"].sum()
    tp, fp = table["tp_70"].sum(), table["fp_70"].sum()
    assert summary["pooled_precision_70"] == pytest.approx(tp / (tp + fp))
    assert summary["pooled_instance_error"] == pytest.approx(
        table["n_touching_error"].sum() / table["n_touching"].sum()
    )
    ap = coco_mask_ap(gts, preds)
    for k, v in ap.items():
        assert summary[f"coco_{k}"] == v or (np.isnan(v) and np.isnan(summary[f"coco_{k}"]))
    assert summary["coco_max_dets"] == metrics.COCO_MAX_DETS
    assert summarize_rows(table.to_dict("records")) == pytest.approx(summarize_rows(table), nan_ok=True)


def test_many_objects_is_fast():
    # 1024 objects on a grid; prediction shifted by one pixel
    gt = np.zeros((512, 512), np.int32)
    k = 0
    for y in range(0, 512, 16):
        for x in range(0, 512, 16):
            k += 1
            gt[y + 2 : y + 13, x + 2 : x + 13] = k
    pred = np.roll(gt, 1, axis=1)
    t0 = time.perf_counter()
    row = evaluate_pair(gt, pred)
    assert time.perf_counter() - t0 < 5.0
    assert row["n_true"] == 1024 and row["tp_50"] == 1024 and row["tp_70"] == 1024
    # IoU of a one-pixel shift of an 11x11 square: 110/132
    assert row["mean_matched_iou_50"] == pytest.approx(110 / 132)


def test_docstring_examples():
    assert doctest.testmod(metrics, optionflags=doctest.ELLIPSIS).failed == 0
