"""What the measurement rules do for one well: the per-object table, the well's profile and summary rows."""
from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from plateseg.io.files import rate_text, read_table, write_table

__all__ = ["measure_objects", "well_summary", "measure_well_tables", "plate_tables"]

log = logging.getLogger(__name__)


def measure_objects(image, labels, out, metadata: dict, picks=None, cells=None, cytoplasm=None,
                    block_size: int | None = None, threads: int = 1) -> pd.DataFrame:
    """The per-object table of a well's final labels (rule measure), written to ``out``.

    Parameters
    ----------
    image, labels : path-like
        The well image store and its final label store.
    out : path-like
        The table.
    metadata : dict
        ``Metadata_*`` values of the well.
    picks : path-like, optional
        The ensemble's picks table (only for the ensemble: adds ``Metadata_Ensemble_Source`` and
        ``Metadata_Ensemble_PredictedIoU``, see :func:`plateseg.measure.objects.measure_well`).
    cells, cytoplasm : path-like, optional
        The cell and cytoplasm label stores (with ``cells.channel``): ``Cells_*`` and ``Cytoplasm_*`` columns.
    block_size : int, optional
        Fields larger than this are measured block by block (same rows).
    threads : int
        Blocks measured at once (the rule's threads; the table does not depend on it).

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

    compartments = {"Cells": cells, "Cytoplasm": cytoplasm} if cells is not None else None
    from plateseg.io.ngff import list_fields, open_field

    t0 = time.perf_counter()
    objects = measure_well(image, labels, dict(metadata), None if picks is None else read_table(picks), compartments,
                           block_size=block_size, threads=threads)
    pixels = sum(int(np.prod(open_field(image, f).shape[-2:])) for f in list_fields(image))
    log.info("%d objects measured, %s", len(objects), rate_text(pixels, time.perf_counter() - t0))
    write_table(objects, out)
    return objects


def well_summary(objects, image, profile_out, summary_out, metadata: dict,
                 labels=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The well's profile and summary rows (rule measure) (:mod:`plateseg.measure.summarize`).

    Parameters
    ----------
    objects : pandas.DataFrame or path-like
        The well's per-object table.
    image : path-like
        The well image store (its fields are counted, with or without nuclei; its pixel QC flags).
    profile_out, summary_out : path-like
        The profile row (:func:`~plateseg.measure.summarize.well_profile`) and the summary row
        (:func:`~plateseg.measure.summarize.summarize_well`), CSV.
    metadata : dict
        ``Metadata_*`` values of the well.
    labels : path-like, optional
        The well's final label store: its record of the blocks each field was labelled in gives the seam QC
        columns ``Metadata_QC_Blocks``, ``Metadata_QC_NucleiAcrossSeams``, ``Metadata_QC_NucleiLargerThanHalo``
        (:func:`~plateseg.measure.summarize.seam_qc`; NaN without a store or a record).

    Returns
    -------
    tuple of pandas.DataFrame
        The rows written.

    Examples
    --------
    well_summary("results/P/A01/objects.parquet", "results/P/A01/image.zarr", "results/P/wells/A01.csv",
                 "results/P/wells/A01_summary.csv", {"Metadata_Well": "A01"}, "results/P/A01/ensemble.zarr")
    """
    import zarr

    from plateseg.io.ngff import block_record, list_fields
    from plateseg.measure.summarize import SEAM_COLUMNS, seam_qc, summarize_well, well_profile

    qc = dict(zarr.open_group(str(image), mode="r").attrs).get("plateseg_qc", {})
    blocks = None if labels is None else block_record(labels)
    if labels is not None and blocks is None:
        log.info("%s records no blocks: %s are empty", labels, ", ".join(SEAM_COLUMNS))
    log.info("seam QC: %s", seam_qc(blocks))
    table = objects if isinstance(objects, pd.DataFrame) else read_table(objects)
    n_fields = len(list_fields(image))
    rows = (well_profile(table, dict(metadata), n_fields, qc, blocks),
            summarize_well(table, dict(metadata), n_fields, qc, blocks))
    for row, out in zip(rows, (profile_out, summary_out)):
        write_table(row, out)
    return rows


def measure_well_tables(image, labels, objects_out, profile_out, summary_out, thumbnail_out, metadata: dict,
                        title: str, picks=None, cells=None, cytoplasm=None, block_size: int | None = None,
                        threads: int = 1) -> None:
    """Rule measure: what a well's final labels give, in one job -- the per-object table
    (:func:`measure_objects`), the profile and summary rows (:func:`well_summary`) and the report's picture
    (:func:`plateseg.pipeline.qc.well_thumbnail`). Arguments as for those.

    Examples
    --------
    measure_well_tables("results/P/A01/image.zarr", "results/P/A01/ensemble.zarr", "results/P/A01/objects.parquet",
                        "results/P/wells/A01.csv", "results/P/wells/A01_summary.csv", "results/P/qc/wells/A01.png",
                        {"Metadata_Well": "A01"}, "P A01", picks="results/P/A01/picks.parquet")
    """
    from plateseg.pipeline.qc import well_thumbnail

    objects = measure_objects(image, labels, objects_out, metadata, picks=picks, cells=cells, cytoplasm=cytoplasm,
                              block_size=block_size, threads=threads)
    well_summary(objects, image, profile_out, summary_out, metadata, labels)
    well_thumbnail(image, labels, objects, thumbnail_out, title)


def plate_tables(profiles, summaries, profiles_out, summary_out) -> None:
    """Rule plate_summary: the plate's profiles and summary, one row per well (low-quality wells flagged).

    Examples
    --------
    plate_tables(["results/P/wells/A01.csv"], ["results/P/wells/A01_summary.csv"],
                 "results/P/profiles.csv", "results/P/plate_summary.csv")
    """
    from plateseg.measure.summarize import plate_summary

    for rows, out in ((profiles, profiles_out), (summaries, summary_out)):
        write_table(plate_summary([read_table(p) for p in rows]), out)
