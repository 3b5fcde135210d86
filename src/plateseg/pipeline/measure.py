"""What the measurement rules do for one well: the per-object table and the well's summary row."""
from __future__ import annotations

import logging

import pandas as pd

from plateseg.io.files import read_table, write_table

__all__ = ["measure_objects", "well_summary"]

log = logging.getLogger(__name__)


def measure_objects(image, labels, out, metadata: dict, picks=None) -> pd.DataFrame:
    """Rule measure: the per-object table of a well's final labels, written to ``out``.

    Parameters
    ----------
    image, labels : path-like
        The well image store and its final label store.
    out : path-like
        The table.
    metadata : dict
        ``Metadata_*`` values of the well.
    picks : path-like, optional
        The ensemble's picks table (only for the ensemble: adds ``Ensemble_Source`` and
        ``Ensemble_PredictedIoU``, see :func:`plateseg.measure.objects.measure_well`).

    Returns
    -------
    pandas.DataFrame
        The table written to ``out``: one row per object.

    Examples
    --------
    measure_objects("results/P/A01/image.zarr", "results/P/A01/ensemble.zarr",
                        "results/P/A01/objects.parquet", {"Metadata_Well": "A01"})
    """
    from plateseg.measure.objects import measure_well

    objects = measure_well(image, labels, dict(metadata), None if picks is None else read_table(picks))
    log.info("%d objects measured", len(objects))
    write_table(objects, out)
    return objects


def well_summary(objects, image, out, metadata: dict) -> pd.DataFrame:
    """Rule summarize_well: one summary row of a well (:func:`plateseg.measure.summarize.summarize_well`).

    Parameters
    ----------
    objects : path-like
        The well's per-object table.
    image : path-like
        The well image store (its fields are counted, with or without nuclei; its pixel QC flags).
    out : path-like
        The row (CSV).
    metadata : dict
        ``Metadata_*`` values of the well.

    Returns
    -------
    pandas.DataFrame
        The row written to ``out``.

    Examples
    --------
    well_summary("results/P/A01/objects.parquet", "results/P/A01/image.zarr",
                     "results/P/wells/A01.csv", {"Metadata_Well": "A01"})
    """
    import zarr

    from plateseg.io.ngff import list_fields
    from plateseg.measure.summarize import summarize_well

    qc = dict(zarr.open_group(str(image), mode="r").attrs).get("plateseg_qc", {})
    row = summarize_well(read_table(objects), dict(metadata), n_fields=len(list_fields(image)), qc=qc)
    write_table(row, out)
    return row
