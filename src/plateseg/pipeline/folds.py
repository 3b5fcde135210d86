"""What rule folds does: the grouped k-fold split of the annotated training images.

(A module of its own: the fold table is an input of every fold model, so it must not rerun when an
engine's code changes.)
"""
from __future__ import annotations

import logging

import pandas as pd

from plateseg.io.files import write_table

__all__ = ["make_folds"]

log = logging.getLogger(__name__)


def make_folds(annotations, out, k: int = 5, seed: int = 0, group_distance: float = 0.25) -> pd.DataFrame:
    """Rule folds: grouped k-fold split of the annotated training images, written to ``out``.

    Parameters
    ----------
    annotations : path-like
        The annotated folder.
    out : path-like
        The fold table (:func:`plateseg.io.annotated.grouped_folds` columns).
    k, seed, group_distance
        As :func:`plateseg.io.annotated.grouped_folds` (``distance``).

    Returns
    -------
    pandas.DataFrame

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from plateseg.io.synth import write_training_set
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = write_training_set(d / "train", n_images=6, shape=(32, 32), seed=0)
    >>> sorted(make_folds(d / "train", d / "folds.csv", k=2)["fold"].unique().tolist())
    [0, 1]
    """
    from plateseg.io.annotated import grouped_folds, load_annotated

    _, index = load_annotated(annotations)
    try:
        folds = grouped_folds(index, k=k, seed=seed, distance=group_distance)
    except ValueError as err:
        raise ValueError(f"config key training.folds: {err} (annotations {annotations})") from err
    for fold, rows in folds.groupby("fold"):
        log.info("fold %d: %d images in %d groups", fold, len(rows), rows["group"].nunique())
    write_table(folds, out)
    return folds