"""The ensemble picker: candidate features and targets, LightGBM picker training and file round trip, NMS."""
import numpy as np
import pandas as pd
import pytest
from skimage.draw import disk, ellipse

from plateseg.ensemble.picker import (Picker, PickerParams, candidate_features, candidate_targets, oracle_pick,
                               pair_overlaps, pick, train_picker)


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


@pytest.fixture(scope="module")
def synthetic_candidates():
    """Candidates whose true IoU is a known noisy function of two features (and independent of a third)."""
    rng = np.random.default_rng(0)
    n = 1500
    table = pd.DataFrame({
        "engine": rng.choice(["unet", "maskrcnn"], n),
        "label": np.arange(1, n + 1),
        "solidity": rng.uniform(0.6, 1.0, n),
        "fg_mean": rng.uniform(0.3, 1.0, n),
        "noise": rng.normal(size=n),
    })
    table["engine_index"] = (table["engine"] == "maskrcnn").astype(int)
    table["iou"] = np.clip(1.6 * (table["solidity"] - 0.6) + 0.4 * (table["fg_mean"] - 0.3) + rng.normal(0, 0.03, n), 0, 1)
    return table


def test_picker_learns_to_rank_candidates_and_round_trips(synthetic_candidates, tmp_path):
    from scipy.stats import spearmanr

    train, test = synthetic_candidates.iloc[:1000], synthetic_candidates.iloc[1000:]
    params = PickerParams(n_boosters=3, num_boost_round=150)
    picker = train_picker(train, params=params)
    assert picker.features == ["solidity", "fg_mean", "noise", "engine_index"]
    pred = picker.predict(test)
    assert spearmanr(pred, test["iou"]).statistic > 0.95 and np.abs(pred - test["iou"]).mean() < 0.05
    imp = picker.importances()
    assert imp["feature"].iloc[0] == "solidity" and imp.set_index("feature").loc["noise", "gain_share"] < 0.05

    picker.save(tmp_path / "picker.json")
    again = Picker.load(tmp_path / "picker.json")
    assert again.features == picker.features and again.meta == picker.meta
    assert np.array_equal(again.predict(test), pred)
    # deterministic: the same data and settings give the same picker
    assert np.array_equal(train_picker(train, params=params).predict(test), pred)
    # boosters differ in their settings, as seed 004 averages varied models
    settings = {tuple(sorted((k, v) for k, v in params.booster_params(i).items() if k != "seed")) for i in range(3)}
    assert len(settings) == 3


def test_picker_file_is_checked(tmp_path):
    (tmp_path / "x.json").write_text('{"format": "something"}')
    with pytest.raises(ValueError, match="plateseg-picker"):
        Picker.load(tmp_path / "x.json")
