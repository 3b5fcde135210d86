"""The ensemble's picker: averaged LightGBM boosters predicting a candidate mask's IoU with the truth.

Trained on out-of-fold candidates of annotated images (:func:`plateseg.ensemble.features.field_candidates`
with their true IoU as target), a :class:`Picker` (several LightGBM boosters with varied learning rate,
leaves and feature fraction, averaged) predicts that IoU for new candidates;
:func:`plateseg.ensemble.pick.pick` then keeps the best candidate per nucleus.
:func:`cross_validated_predictions` gives every candidate a prediction by a picker that did not train
on its group (fold).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from plateseg.ensemble.features import feature_columns

__all__ = ["PICKER_FORMAT", "PickerParams", "Picker", "train_picker", "cross_validated_predictions"]

PICKER_FORMAT = "plateseg-picker"
PICKER_VERSION = 1


@dataclass
class PickerParams:
    """Settings of the picker: ``n_boosters`` averaged LightGBM regressors.

    With ``n = len(learning_rates)``, booster ``i`` (0-based) uses (see :meth:`booster_params`)

    - learning rate ``learning_rates[i % n]``,
    - leaves ``num_leaves[(i + i // n) % len(num_leaves)]``,
    - feature fraction ``feature_fractions[(i + 2 * (i // n)) % len(feature_fractions)]``,

    so that every round of ``n`` boosters shifts the leaves by one and the feature fractions by two
    and the combinations differ; each has ``num_boost_round`` trees, ``min_data_in_leaf``,
    ``lambda_l2`` and seed ``seed + i``. Predictions are averaged.

    Examples
    --------
    >>> p = PickerParams()
    >>> [(b["learning_rate"], b["num_leaves"], b["feature_fraction"]) for b in map(p.booster_params, range(5))]
    [(0.03, 15, 0.7), (0.05, 31, 0.85), (0.1, 63, 1.0), (0.03, 31, 1.0), (0.05, 63, 0.7)]
    """

    n_boosters: int = 5
    num_boost_round: int = 300
    learning_rates: tuple = (0.03, 0.05, 0.1)
    num_leaves: tuple = (15, 31, 63)
    feature_fractions: tuple = (0.7, 0.85, 1.0)
    min_data_in_leaf: int = 20
    lambda_l2: float = 1.0
    seed: int = 0

    @classmethod
    def coerce(cls, params=None) -> "PickerParams":
        """``params`` (None, a dict of fields or a PickerParams) as a checked PickerParams.

        Examples
        --------
        >>> PickerParams.coerce({"n_boosters": 2}).n_boosters
        2
        """
        from plateseg.config.params import coerce_params

        return coerce_params(cls, params, "picker")

    def booster_params(self, i: int) -> dict:
        """LightGBM parameters of booster ``i`` (the formula in the class docstring).

        Examples
        --------
        >>> PickerParams(seed=7).booster_params(1)["seed"]
        8
        """
        lrs, leaves, ffs = self.learning_rates, self.num_leaves, self.feature_fractions
        return {
            "objective": "regression",
            "metric": "l2",
            "learning_rate": float(lrs[i % len(lrs)]),
            "num_leaves": int(leaves[(i + i // len(lrs)) % len(leaves)]),
            "feature_fraction": float(ffs[(i + 2 * (i // len(lrs))) % len(ffs)]),
            "min_data_in_leaf": int(self.min_data_in_leaf),
            "lambda_l2": float(self.lambda_l2),
            "seed": int(self.seed + i),
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": 1,
            "verbosity": -1,
        }


class Picker:
    """Averaged LightGBM boosters predicting a candidate's IoU with the truth from its features.

    Parameters
    ----------
    features : list of str
        The feature columns, in the boosters' order.
    boosters : list of lightgbm.Booster
    meta : dict, optional
        Saved with the picker (training settings, number of candidates, folds).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> table = pd.DataFrame({"area": rng.uniform(10, 100, 200)})
    >>> table["iou"] = table["area"] / 100
    >>> picker = train_picker(table, params={"n_boosters": 1, "num_boost_round": 20})
    >>> picker.features, bool(picker.predict(table.head(1))[0] > 0)
    (['area'], True)
    """

    def __init__(self, features, boosters, meta=None):
        self.features = list(features)
        self.boosters = list(boosters)
        self.meta = dict(meta or {})

    def predict(self, table: pd.DataFrame) -> np.ndarray:
        """Predicted IoU (clipped to 0..1) of every row of ``table`` (missing features are NaN).

        Examples
        --------
        >>> Picker(["area"], []).predict(pd.DataFrame({"area": []})).shape
        (0,)
        """
        if not len(table):
            return np.zeros(0)
        X = np.column_stack([pd.to_numeric(table[f], errors="coerce").to_numpy(np.float64)
                             if f in table else np.full(len(table), np.nan) for f in self.features])
        pred = np.mean([b.predict(X, num_threads=1) for b in self.boosters], axis=0)
        return np.clip(pred, 0.0, 1.0)

    def importances(self) -> pd.DataFrame:
        """Gain and split importance of every feature, averaged over the boosters, by decreasing gain."""
        gain = np.mean([b.feature_importance("gain") for b in self.boosters], axis=0)
        split = np.mean([b.feature_importance("split") for b in self.boosters], axis=0)
        total = gain.sum() or 1.0
        df = pd.DataFrame({"feature": self.features, "gain": gain, "gain_share": gain / total, "splits": split})
        return df.sort_values(["gain", "feature"], ascending=[False, True], kind="stable").reset_index(drop=True)

    def save(self, path) -> None:
        """Write the picker (feature list, boosters as LightGBM model text, metadata) as one JSON file, atomically."""
        from plateseg.io.files import atomic_path

        payload = {"format": PICKER_FORMAT, "format_version": PICKER_VERSION, "features": self.features,
                   "meta": self.meta, "boosters": [b.model_to_string() for b in self.boosters]}
        with atomic_path(Path(path)) as tmp:
            tmp.write_text(json.dumps(payload))

    @classmethod
    def load(cls, path) -> "Picker":
        """Read a picker written by :meth:`save` (raises ValueError for another file or a newer format)."""
        import lightgbm as lgb

        payload = json.loads(Path(path).read_text())
        if payload.get("format") != PICKER_FORMAT:
            raise ValueError(f"{path} is not a {PICKER_FORMAT} file")
        if int(payload.get("format_version", 0)) > PICKER_VERSION:
            raise ValueError(f"{path} has format version {payload['format_version']}, newer than this code")
        boosters = [lgb.Booster(model_str=s) for s in payload["boosters"]]
        return cls(payload["features"], boosters, payload.get("meta"))


def train_picker(table: pd.DataFrame, target: str = "iou", params=None, features=None, log=None) -> Picker:
    """Train the picker on candidates with known IoU (out-of-fold predictions of annotated images).

    Parameters
    ----------
    table : pandas.DataFrame
        Candidate features (:func:`plateseg.ensemble.features.candidate_features`) and the
        ``target`` column.
    target : str
        The column to predict (the true IoU).
    params : PickerParams or dict, optional
    features : list of str, optional
        Default :func:`plateseg.ensemble.features.feature_columns` of ``table``.
    log : logging.Logger, optional
        Receives one line per booster.

    Returns
    -------
    Picker

    Examples
    --------
    >>> table = pd.DataFrame({"area": np.arange(50.0), "iou": np.linspace(0, 1, 50)})
    >>> train_picker(table, params={"n_boosters": 2, "num_boost_round": 5}).meta["n_candidates"]
    50
    """
    import lightgbm as lgb

    p = PickerParams.coerce(params)
    feats = list(features or feature_columns(table))
    if not len(table):
        raise ValueError("no candidates to train the picker on")
    X = table[feats].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    y = table[target].to_numpy(np.float64)
    boosters = []
    for i in range(p.n_boosters):
        bp = p.booster_params(i)
        data = lgb.Dataset(X, y, feature_name=feats, free_raw_data=False,
                           params={"verbosity": -1, "min_data_in_leaf": bp["min_data_in_leaf"]})
        boosters.append(lgb.train(bp, data, num_boost_round=p.num_boost_round))
        if log is not None:
            log.info("booster %d/%d: lr %g, %d leaves, feature fraction %g", i + 1, p.n_boosters,
                     bp["learning_rate"], bp["num_leaves"], bp["feature_fraction"])
    meta = {"params": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(p).items()},
            "n_candidates": int(len(table)), "target": target}
    return Picker(feats, boosters, meta)


def cross_validated_predictions(table: pd.DataFrame, params=None, group: str = "fold",
                                always: pd.DataFrame | None = None) -> np.ndarray:
    """Predicted IoU of every candidate by a picker trained on the other groups' candidates only.

    Parameters
    ----------
    table : pandas.DataFrame
        Candidates with features, the target ``iou`` and the ``group`` column.
    params : PickerParams or dict, optional
    group : str
        The column whose values are held out in turn (``fold``; the column is no feature).
    always : pandas.DataFrame, optional
        Candidates added to every training set (e.g. of images that are never predicted).

    Returns
    -------
    numpy.ndarray
        One predicted IoU per row of ``table``, by the picker that did not see the row's
        ``group`` value.

    Examples
    --------
    >>> table = pd.DataFrame({"area": np.arange(60.0), "iou": np.linspace(0, 1, 60), "fold": np.arange(60) % 2})
    >>> cross_validated_predictions(table, {"n_boosters": 1, "num_boost_round": 5}).shape
    (60,)
    """
    pred = np.full(len(table), np.nan)
    features = [c for c in feature_columns(table) if c != group]
    for g in sorted(table[group].unique()):
        held = (table[group] == g).to_numpy()
        if held.all() and always is None:
            raise ValueError("cross-validating the picker needs candidates of at least two folds")
        train = table[~held] if always is None else pd.concat([always, table[~held]], ignore_index=True)
        picker = train_picker(train, params=params, features=features)
        pred[held] = picker.predict(table[held])
    return pred

