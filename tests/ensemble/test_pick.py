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
