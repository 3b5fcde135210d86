"""Greedy NMS picking and the oracle (plateseg.ensemble.pick)."""
import numpy as np
import pandas as pd
from skimage.draw import disk

from plateseg.ensemble.pick import oracle_pick, pick


def _two_engine_field():
    """Three nuclei: A found by both engines (U-Net better), B merged with C by the U-Net but split by
    Mask R-CNN, D found only by Mask R-CNN."""
    shape = (64, 96)
    truth = np.zeros(shape, np.int32)
    for k, (cy, cx) in enumerate([(15, 15), (40, 40), (40, 56), (15, 80)], start=1):
        rr, cc = disk((cy, cx), 7, shape=shape)
        truth[rr, cc] = k
    u = np.zeros(shape, np.int32)
    u[truth == 1] = 1
    u[(truth == 2) | (truth == 3)] = 2
    u[38:43, 46:51] = 2  # the bridge of the merged pair
    m = np.zeros(shape, np.int32)
    rr, cc = disk((15, 16), 6, shape=shape)  # A, a bit off
    m[rr, cc] = 1
    m[truth == 2] = 2
    m[truth == 3] = 3
    m[truth == 4] = 4
    return truth, {"unet": u, "maskrcnn": m}


def test_nms_keeps_the_better_candidate_and_a_nucleus_only_one_engine_found():
    truth, labels = _two_engine_field()
    table = pd.DataFrame({"engine": ["unet", "unet", "maskrcnn", "maskrcnn", "maskrcnn", "maskrcnn"],
                          "label": [1, 2, 1, 2, 3, 4],
                          "predicted_iou": [0.9, 0.4, 0.7, 0.8, 0.85, 0.6]})
    out, picks = pick(labels, table, min_iou=0.3, nms_iou=0.3)
    kept = set(zip(picks["engine"], picks["source_label"]))
    # A: the U-Net's (0.9) beats Mask R-CNN's (0.7); B and C: Mask R-CNN's split masks beat the merged blob;
    # D: only Mask R-CNN found it, and it is kept
    assert kept == {("unet", 1), ("maskrcnn", 2), ("maskrcnn", 3), ("maskrcnn", 4)}
    assert picks["predicted_iou"].is_monotonic_decreasing and picks["label"].tolist() == [1, 2, 3, 4]
    assert set(np.unique(out)) == {0, 1, 2, 3, 4}
    for row in picks.itertuples():
        assert np.array_equal(out == row.label, labels[row.engine] == row.source_label)

    # a low predicted IoU drops a candidate even when nothing overlaps it; a high one for the blob suppresses B and C
    table.loc[5, "predicted_iou"] = 0.2
    table.loc[1, "predicted_iou"] = 0.95
    _, picks = pick(labels, table, min_iou=0.3, nms_iou=0.3)
    assert set(zip(picks["engine"], picks["source_label"])) == {("unet", 2), ("unet", 1)}


def test_oracle_picks_the_truest_candidates():
    truth, labels = _two_engine_field()
    out, picks = oracle_pick(labels, truth)
    from plateseg.evaluation.metrics import matching

    assert set(zip(picks["engine"], picks["source_label"])) == {("unet", 1), ("maskrcnn", 2), ("maskrcnn", 3), ("maskrcnn", 4)}
    assert matching(truth, out, 0.9)["f1"] == 1.0


def test_a_mask_mostly_inside_a_kept_object_is_dropped_not_kept_as_its_rim():
    """IoU misses containment: a small Mask R-CNN mask inside a larger kept U-Net nucleus has IoU
    (small / large) under nms_iou. Kept, it would survive as the few pixels the large one leaves free.
    It is dropped when more than max_covered of its pixels are taken; a mask overlapping less keeps its free pixels."""
    shape = (40, 80)
    u = np.zeros(shape, np.int32)
    rr, cc = disk((20, 20), 12, shape=shape)
    u[rr, cc] = 1
    m = np.zeros(shape, np.int32)
    rr, cc = disk((20, 31), 4, shape=shape)  # mostly inside nucleus 1, a rim outside it
    m[rr, cc] = 1
    rr, cc = disk((20, 48), 7, shape=shape)  # free: overlaps nothing
    m[rr, cc] = 2
    inside = (m == 1) & (u == 1)
    assert 0.5 < inside.sum() / (m == 1).sum() < 1 and (m == 1).sum() / (u == 1).sum() < 0.3  # IoU below nms_iou
    table = pd.DataFrame({"engine": ["unet", "maskrcnn", "maskrcnn"], "label": [1, 1, 2],
                          "predicted_iou": [0.9, 0.6, 0.5]})
    out, picks = pick({"unet": u, "maskrcnn": m}, table, nms_iou=0.3)
    assert set(zip(picks["engine"], picks["source_label"])) == {("unet", 1), ("maskrcnn", 2)}
    assert np.array_equal(out == 1, u == 1) and np.array_equal(out == 2, m == 2)
    # without the coverage rule, the contained mask survives as its rim: the fragment this rule removes
    out, picks = pick({"unet": u, "maskrcnn": m}, table, nms_iou=0.3, max_covered=1.0)
    rim = picks.set_index(["engine", "source_label"]).loc[("maskrcnn", 1), "area"]
    assert rim == ((m == 1) & (u == 0)).sum() > 0
    # a second mask half over the first kept Mask R-CNN object (40% taken) keeps its free 60%
    m2 = np.zeros(shape, np.int32)
    m2[30:40, 60:70] = 3
    u2 = np.zeros(shape, np.int32)
    u2[30:40, 66:76] = 2
    out, picks = pick({"unet": u2, "maskrcnn": m2}, pd.DataFrame(
        {"engine": ["maskrcnn", "unet"], "label": [3, 2], "predicted_iou": [0.8, 0.7]}), nms_iou=0.5)
    assert picks["area"].tolist() == [100, 60]
