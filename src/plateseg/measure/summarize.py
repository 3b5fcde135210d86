"""Per-well and per-plate tables of the per-object table: profiles and summaries.

A well's **profile** is what ``pycytominer.aggregate(objects, compute_object_count=True)`` gives for it:
``Metadata_*``, ``Metadata_Object_Count`` and the median of every ``Nuclei_*`` feature, under the same
``Nuclei_*`` name, so ``pycytominer.normalize`` / ``feature_select`` read the plate's profiles as they are.
A well's **summary** is CellProfiler's per-image aggregate: ``Count_Nuclei`` (and per field), and for every
feature its mean, median and standard deviation (``Mean_<feature>``, ``Median_<feature>``,
``StDev_<feature>``, e.g. ``Mean_Nuclei_AreaShape_Area``). Both carry the well's ``Metadata_QC_*`` and, for
the ensemble, ``Metadata_Ensemble_*`` columns.

The well's QC columns (the seam ones, :data:`SEAM_COLUMNS`, from the final label store's record of its
blocks, :func:`plateseg.io.ngff.block_record`, summed over the well's fields):

- ``Metadata_QC_EmptyFields``, ``Metadata_QC_SaturatedFields``: fields with an empty or a saturated plane;
- ``Metadata_QC_Blocks``: blocks the fields were labelled in (a field no larger than ``tiling.block_size`` is 1);
- ``Metadata_QC_NucleiAcrossSeams``: nuclei that cross a block seam, kept whole by the block holding their centroid;
- ``Metadata_QC_NucleiLargerThanHalo``: nuclei reaching their block window's outer edge, larger than
  ``tiling.block_halo`` allows (they may be cut: raise the halo);
- ``Metadata_QC_LowPredictedIoU`` (plate tables, ensemble): see :func:`flag_low_quality`.

The seam columns are 0 for fields labelled whole, and empty (NaN) for a label store that records no blocks
(Mask R-CNN's labels, inferred tile by tile).
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

__all__ = ["SEAM_COLUMNS", "feature_columns", "profile_features", "seam_qc", "well_profile", "summarize_well",
           "plate_summary", "flag_low_quality"]

COMPARTMENTS = ("Nuclei_", "Cells_", "Cytoplasm_")

# per-well seam QC column -> the key of a field's record in the label store (plateseg.io.ngff.block_record)
SEAM_COLUMNS = {"Metadata_QC_Blocks": "blocks", "Metadata_QC_NucleiAcrossSeams": "on_seams",
                "Metadata_QC_NucleiLargerThanHalo": "cut_by_halo"}


def seam_qc(blocks: dict | None) -> dict:
    """The well's seam QC columns (:data:`SEAM_COLUMNS`): a label store's block record summed over its fields.

    Parameters
    ----------
    blocks : dict or None
        field -> ``{"blocks", "on_seams", "cut_by_halo", ...}`` (:func:`plateseg.io.ngff.block_record`); None
        for a label store without a record (every column NaN).

    Returns
    -------
    dict
        ``Metadata_QC_Blocks``, ``Metadata_QC_NucleiAcrossSeams``, ``Metadata_QC_NucleiLargerThanHalo``.

    Examples
    --------
    >>> seam_qc({1: {"blocks": 4, "on_seams": 9, "cut_by_halo": 1}, 2: {"blocks": 1, "on_seams": 0, "cut_by_halo": 0}})
    {'Metadata_QC_Blocks': 5, 'Metadata_QC_NucleiAcrossSeams': 9, 'Metadata_QC_NucleiLargerThanHalo': 1}
    >>> seam_qc(None)["Metadata_QC_Blocks"]
    nan
    """
    if blocks is None:
        return {c: np.nan for c in SEAM_COLUMNS}
    return {c: int(sum(int(v[key]) for v in blocks.values())) for c, key in SEAM_COLUMNS.items()}


def profile_features(objects: pd.DataFrame) -> list[str]:
    """The columns ``pycytominer`` infers as features: every compartment column (``Nuclei_*``)."""
    return [c for c in objects.columns if c.startswith(COMPARTMENTS)]


def feature_columns(objects: pd.DataFrame) -> list[str]:
    """Numeric per-object features that are summarised (compartment columns but the locations and the
    parent-child relations)."""
    return [c for c in profile_features(objects)
            if not any(k in c for k in ("_Location_", "_Parent_", "_Children_")) and pd.api.types.is_numeric_dtype(objects[c])]


def _well_metadata(objects: pd.DataFrame, metadata: dict, n_fields: int, qc: dict | None, blocks: dict | None) -> dict:
    row: dict = dict(metadata)
    row["Metadata_FieldCount"] = int(n_fields)
    for flag in ("empty", "saturated"):
        row[f"Metadata_QC_{flag.capitalize()}Fields"] = len({int(f) for f, _ in (qc or {}).get(flag, [])})
    row.update(seam_qc(blocks))
    if "Metadata_Ensemble_Source" in objects.columns:
        n = len(objects)
        row["Metadata_Ensemble_FractionUNet"] = float((objects["Metadata_Ensemble_Source"] == "unet").mean()) if n else np.nan
        row["Metadata_Ensemble_MeanPredictedIoU"] = float(objects["Metadata_Ensemble_PredictedIoU"].mean()) if n else np.nan
    return row


def well_profile(objects: pd.DataFrame, metadata: dict, n_fields: int, qc: dict | None = None,
                 blocks: dict | None = None) -> pd.DataFrame:
    """The well's profile row: ``pycytominer.aggregate`` (median) of its objects, with the well's metadata.

    Parameters
    ----------
    objects, metadata, n_fields, qc, blocks
        As for :func:`summarize_well`.

    Returns
    -------
    pandas.DataFrame
        One row: ``metadata``, ``Metadata_Object_Count``, ``Metadata_FieldCount``, ``Metadata_QC_*``
        (``Metadata_Ensemble_*`` for the ensemble) and the median of every ``Nuclei_*`` column (NaN for a
        well without nuclei).

    Examples
    --------
    >>> obj = pd.DataFrame({"Metadata_Site": [1, 1, 2], "Metadata_ObjectNumber": [1, 2, 1],
    ...                     "Nuclei_AreaShape_Area": [10.0, 20.0, 60.0]})
    >>> row = well_profile(obj, {"Metadata_Plate": "P", "Metadata_Well": "A01"}, n_fields=2)
    >>> row[["Metadata_Well", "Metadata_Object_Count", "Nuclei_AreaShape_Area"]].values.tolist()
    [['A01', 3, 20.0]]
    """
    row = {**dict(metadata), "Metadata_Object_Count": int(len(objects))}
    row.update(_well_metadata(objects, {}, n_fields, qc, blocks))
    for c in profile_features(objects):
        row[c] = float(objects[c].astype(float).median()) if len(objects) else np.nan
    log.info("%s: profile of %d nuclei, %d features", metadata, len(objects), len(profile_features(objects)))
    return pd.DataFrame([row])


def summarize_well(objects: pd.DataFrame, metadata: dict, n_fields: int, qc: dict | None = None,
                   blocks: dict | None = None) -> pd.DataFrame:
    """One summary row for a well.

    Parameters
    ----------
    objects : DataFrame
        The well's per-object table (may be empty).
    metadata : dict
        ``Metadata_*`` values of the well (plate, well, row, column).
    n_fields : int
        Number of fields imaged in the well (a field without nuclei still counts).
    qc : dict, optional
        Pixel QC of the ingest (``{"empty": [[field, channel], ...], "saturated": [...]}``):
        ``Metadata_QC_EmptyFields`` / ``Metadata_QC_SaturatedFields`` count the fields with such a plane.
    blocks : dict, optional
        The final label store's block record (:func:`plateseg.io.ngff.block_record`): the seam QC columns
        (:func:`seam_qc`, NaN without it).

    Examples
    --------
    >>> obj = pd.DataFrame({"Metadata_Site": [1, 1, 2], "Nuclei_AreaShape_Area": [10.0, 20.0, 30.0]})
    >>> row = summarize_well(obj, {"Metadata_Well": "A01"}, n_fields=2)
    >>> int(row["Count_Nuclei"].iloc[0]), float(row["Mean_Nuclei_AreaShape_Area"].iloc[0])
    (3, 20.0)
    >>> summarize_well(obj, {}, 2, qc={"empty": [[2, "DNA"], [2, "Marker"]]})["Metadata_QC_EmptyFields"].iloc[0]
    np.int64(1)
    >>> seams = {1: {"blocks": 4, "on_seams": 3, "cut_by_halo": 0}, 2: {"blocks": 4, "on_seams": 5, "cut_by_halo": 0}}
    >>> summarize_well(obj, {}, 2, blocks=seams)[["Metadata_QC_Blocks", "Metadata_QC_NucleiAcrossSeams"]].values.tolist()
    [[8, 8]]
    """
    row = _well_metadata(objects, metadata, n_fields, qc, blocks)
    row["Count_Nuclei"] = int(len(objects))
    row["Count_Nuclei_PerField"] = len(objects) / n_fields if n_fields else np.nan
    feats = feature_columns(objects)
    for c in feats:  # column by column: no float copy of the whole table
        col = objects[c].astype(float)
        row[f"Mean_{c}"] = col.mean() if len(col) else np.nan
        row[f"Median_{c}"] = col.median() if len(col) else np.nan
        row[f"StDev_{c}"] = col.std(ddof=1) if len(col) > 1 else np.nan
    log.info("%s: %d nuclei in %d field(s), %d features summarised", metadata, len(objects), n_fields, len(feats))
    return pd.DataFrame([row])


def plate_summary(well_rows: list[pd.DataFrame]) -> pd.DataFrame:
    """Stack per-well rows (summaries or profiles) into the plate table, sorted by row and column.

    Wells whose mean predicted IoU is low for the plate are flagged (:func:`flag_low_quality`).
    """
    df = pd.concat(well_rows, ignore_index=True).copy()  # one block per dtype (many feature columns)
    keys = [k for k in ("Metadata_Plate", "Metadata_Row", "Metadata_Column") if k in df.columns]
    if keys:
        df["_rowlen"] = df["Metadata_Row"].str.len() if "Metadata_Row" in df.columns else 0
        df = df.sort_values(["_rowlen", *keys] if "Metadata_Row" in df.columns else keys).drop(columns="_rowlen")
    df = flag_low_quality(df.reset_index(drop=True))
    count = "Count_Nuclei" if "Count_Nuclei" in df else "Metadata_Object_Count"
    log.info("plate table: %d wells, %d nuclei", len(df), int(df[count].sum()) if count in df else 0)
    return df


def flag_low_quality(wells: pd.DataFrame, mads: float = 3.0, floor: float = 0.5) -> pd.DataFrame:
    """``Metadata_QC_LowPredictedIoU``: wells whose mean predicted IoU (ensemble) is low for the plate.

    A well is flagged when its ``Metadata_Ensemble_MeanPredictedIoU`` lies more than ``mads`` scaled median
    absolute deviations below the plate's median, or below ``floor`` (the picker expects fewer than half of
    the pixels of its masks to be right). Without the ensemble's column the table is returned as it is.

    Examples
    --------
    >>> w = pd.DataFrame({"Metadata_Well": ["A01", "A02", "A03", "A04"],
    ...                   "Metadata_Ensemble_MeanPredictedIoU": [0.80, 0.82, 0.79, 0.60]})
    >>> flag_low_quality(w)["Metadata_QC_LowPredictedIoU"].tolist()
    [0, 0, 0, 1]
    """
    col = "Metadata_Ensemble_MeanPredictedIoU"
    if col not in wells.columns:
        return wells
    iou = wells[col].astype(float)
    med = iou.median()
    mad = 1.4826 * (iou - med).abs().median()
    low = (iou < floor) | (iou < med - mads * max(mad, 0.01))
    for well in wells.loc[low, "Metadata_Well"] if "Metadata_Well" in wells else []:
        log.warning("well %s: mean predicted IoU %.3f is low for the plate (median %.3f): Metadata_QC_LowPredictedIoU",
                    well, iou[wells["Metadata_Well"] == well].iloc[0], med)
    return wells.assign(Metadata_QC_LowPredictedIoU=low.astype(np.int64))
