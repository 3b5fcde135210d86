"""What rule train_picker does: the LightGBM picker on the out-of-fold candidates of every fold."""
from __future__ import annotations

import logging

import pandas as pd

from plateseg.io.files import read_table, write_table

__all__ = ["train_picker_files"]

log = logging.getLogger(__name__)


def train_picker_files(candidates, picker_out, importances_out, figure_out, params=None):
    """Rule train_picker: the LightGBM picker on the out-of-fold candidates of every fold.

    Parameters
    ----------
    candidates : list of path-like
        The candidate tables of :func:`plateseg.pipeline.candidates.oof_candidates`.
    picker_out, importances_out, figure_out : path-like
        Outputs: the picker (:meth:`plateseg.ensemble.picker.Picker.save`), its feature
        importances (table) and their figure (:func:`plateseg.measure.qc.importance_figure`).
    params : PickerParams or dict, optional

    Returns
    -------
    plateseg.ensemble.picker.Picker

    Examples
    --------
    train_picker_files(["candidates_0.parquet", "candidates_1.parquet"], "picker.json",
                           "importances.csv", "importances.png", {"n_boosters": 5})
    """
    from plateseg.ensemble.picker import train_picker
    from plateseg.measure.qc import importance_figure

    table = pd.concat([read_table(path) for path in candidates], ignore_index=True)
    log.info("%d candidates of %d images (%s)", len(table), table["image"].nunique(), table["engine"].value_counts().to_dict())
    picker = train_picker(table, params=params, log=log)
    picker.meta.update(folds=sorted(int(f) for f in table["fold"].unique()), n_images=int(table["image"].nunique()))
    picker.save(picker_out)
    importances = picker.importances()
    write_table(importances, importances_out)
    importance_figure(importances, figure_out)
    log.info("picker written to %s; top features: %s", picker_out, ", ".join(importances["feature"].head(5)))
    return picker
