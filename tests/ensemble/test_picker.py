"""The LightGBM picker: training, ranking, file round trip (plateseg.ensemble.picker)."""
import numpy as np
import pandas as pd
import pytest

from plateseg.ensemble.picker import Picker, PickerParams, train_picker


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
