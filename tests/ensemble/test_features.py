"""Candidate features and IoU targets of the ensemble (plateseg.ensemble.features)."""
import numpy as np
import pandas as pd
import pytest
from skimage.draw import disk, ellipse

from plateseg.ensemble.features import candidate_features, candidate_targets, pair_overlaps


def _maps(shape, *label_images):
    """Smooth fake U-Net maps: foreground high inside objects, boundary at their edges, centre peaks."""
    from scipy import ndimage as ndi

    fg = np.zeros(shape, np.float32)
    for lab in label_images:
        fg = np.maximum(fg, (lab > 0).astype(np.float32))
    fg = ndi.gaussian_filter(fg, 1.0)
    bd = ndi.gaussian_gradient_magnitude(fg, 1.0)
    ce = ndi.gaussian_filter(ndi.distance_transform_edt(fg > 0.5), 2.0).astype(np.float32)
    return np.stack([fg, bd / max(bd.max(), 1e-6), ce / max(ce.max(), 1e-6)])


def test_features_are_identical_for_identical_masks_anywhere_in_the_image():
    """The same masks, maps and scores shifted to another place (and numbered differently) give the same features."""
    shape = (160, 200)
    u = np.zeros(shape, np.int32)
    m = np.zeros(shape, np.int32)
    rr, cc = ellipse(30, 40, 12, 8, rotation=0.4, shape=shape)
    u[rr, cc] = 3
    rr, cc = disk((31, 41), 10, shape=shape)
    m[rr, cc] = 7
    dy, dx = 90, 130
    u2, m2 = np.zeros_like(u), np.zeros_like(m)
    u2[dy:, dx:] = u[:-dy, :-dx] * 5  # label 15
    m2[dy:, dx:] = (m[:-dy, :-dx] > 0) * 2
    f1 = candidate_features({"unet": u, "maskrcnn": m}, _maps(shape, u, m), {"maskrcnn": {7: 0.9}})
    f2 = candidate_features({"unet": u2, "maskrcnn": m2}, _maps(shape, u2, m2), {"maskrcnn": {2: 0.9}})
    cols = [c for c in f1.columns if c != "label"]
    assert len(f1) == 2 and f1["best_iou_other"].iloc[0] > 0.3 and f1["score"].iloc[1] == 0.9
    pd.testing.assert_frame_equal(f1[cols], f2[cols], check_exact=False, rtol=1e-6)
    # only the U-Net candidate's own score and the score of the Mask R-CNN candidate's (U-Net) rival are NaN
    assert f1[cols].notna().sum().sum() == f1[cols].size - 2
    assert f1["other_score"].iloc[0] == 0.9 and np.isnan(f1["other_score"].iloc[1])


def test_rival_and_field_features_on_known_masks():
    """Rival (best-overlapping candidate of the other engine), size relative to the field, contact with neighbours."""
    u = np.zeros((20, 40), np.int32)
    u[2:8, 2:8] = 1  # 36 px, touches 2 along one side
    u[2:8, 8:14] = 2  # 36 px
    u[12:18, 30:39] = 4  # 54 px, alone
    m = np.zeros_like(u)
    m[2:8, 2:14] = 9  # the pair merged: 72 px
    f = candidate_features({"unet": u, "maskrcnn": m}, scores={"maskrcnn": {9: 0.8}}).set_index(["engine", "label"])
    assert f.loc[("unet", 1), "touch_frac"] == pytest.approx(6 / 20)  # 6 of its 20 edge pixels touch label 2
    assert f.loc[("unet", 4), "touch_frac"] == 0 and f.loc[("maskrcnn", 9), "touch_frac"] == 0
    assert f.loc[("unet", 4), "area_rel"] == pytest.approx(54 / 36) and f.loc[("maskrcnn", 9), "area_rel"] == 1
    assert f.loc[("unet", 1), "field_density"] == pytest.approx(3 * 1e4 / 800)
    assert f.loc[("unet", 1), "other_area_ratio"] == 0.5 and f.loc[("unet", 1), "other_score"] == 0.8
    assert f.loc[("maskrcnn", 9), "other_area_ratio"] == 2 and f.loc[("maskrcnn", 9), "other_solidity"] == 1
    assert np.isnan(f.loc[("unet", 4), "other_area_ratio"]) and np.isnan(f.loc[("unet", 4), "other_score"])


def test_targets_and_overlaps_on_known_masks():
    truth = np.zeros((10, 10), int)
    truth[0:4, 0:4] = 1  # 16 px
    cand = np.zeros((10, 10), int)
    cand[0:4, 0:2] = 5  # 8 px inside: IoU 0.5
    cand[6:8, 6:8] = 9  # no truth: 0
    t = candidate_targets(cand, truth)
    assert t.to_dict() == {5: 0.5, 9: 0.0}
    ov = pair_overlaps(cand, truth)
    assert ov[["label_a", "label_b", "inter"]].values.tolist() == [[5, 1, 8]]


def test_a_blocks_candidates_get_the_whole_fields_field_features():
    """In a block of a large field, area_rel and field_density are the whole field's (field_statistics), so the
    picker sees an object the same whichever window holds it."""
    from plateseg.ensemble.features import candidate_features, field_statistics

    lab = np.zeros((64, 64), np.int64)
    for k, (y, x, r) in enumerate([(8, 8, 3), (8, 40, 5), (40, 10, 2), (44, 44, 6), (20, 24, 4)], start=1):
        lab[y - r:y + r, x - r:x + r] = k
    whole = candidate_features({"unet": lab}).set_index("label")
    block = lab[:32, :32]  # holds objects 1 and 5 whole
    plain = candidate_features({"unet": block}).set_index("label")
    fixed = candidate_features({"unet": block}, field_stats=field_statistics({"unet": lab}, 16)).set_index("label")
    for f in ("area_rel", "field_density"):
        np.testing.assert_allclose(fixed.loc[[1, 5], f], whole.loc[[1, 5], f])
        assert not np.allclose(plain.loc[[1, 5], f], whole.loc[[1, 5], f])
