"""Per-well and per-plate summaries of the per-object table.

A well's summary is one row: ``Metadata_*``, ``Count_Nuclei`` (and per field), and for every
numeric object feature its mean, median and standard deviation over the well's nuclei
(``Mean_Nuclei_<feature>``, ``Median_Nuclei_<feature>``, ``StDev_Nuclei_<feature>``).
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

__all__ = ["feature_columns", "summarize_well", "plate_summary"]

_NOT_FEATURES = ("Metadata_", "ObjectNumber", "Location_", "Ensemble_Source")


def feature_columns(objects: pd.DataFrame) -> list[str]:
    """Numeric per-object feature columns (everything but metadata, ids and locations)."""
    return [
        c
        for c in objects.columns
        if not c.startswith(_NOT_FEATURES) and pd.api.types.is_numeric_dtype(objects[c])
    ]


def summarize_well(objects: pd.DataFrame, metadata: dict, n_fields: int, qc: dict | None = None) -> pd.DataFrame:
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

    Examples
    --------
    >>> obj = pd.DataFrame({"Metadata_Field": [1, 1, 2], "AreaShape_Area": [10.0, 20.0, 30.0]})
    >>> row = summarize_well(obj, {"Metadata_Well": "A01"}, n_fields=2)
    >>> int(row["Count_Nuclei"].iloc[0]), float(row["Mean_Nuclei_AreaShape_Area"].iloc[0])
    (3, 20.0)
    >>> summarize_well(obj, {}, 2, qc={"empty": [[2, "DNA"], [2, "Marker"]]})["Metadata_QC_EmptyFields"].iloc[0]
    np.int64(1)
    """
    row: dict = dict(metadata)
    row["Metadata_FieldCount"] = int(n_fields)
    for flag in ("empty", "saturated"):
        row[f"Metadata_QC_{flag.capitalize()}Fields"] = len({int(f) for f, _ in (qc or {}).get(flag, [])})
    row["Count_Nuclei"] = int(len(objects))
    row["Count_Nuclei_PerField"] = len(objects) / n_fields if n_fields else np.nan
    feats = feature_columns(objects)
    values = objects[feats].astype(float) if feats else pd.DataFrame()
    for c in feats:
        col = values[c]
        row[f"Mean_Nuclei_{c}"] = col.mean() if len(col) else np.nan
        row[f"Median_Nuclei_{c}"] = col.median() if len(col) else np.nan
        row[f"StDev_Nuclei_{c}"] = col.std(ddof=1) if len(col) > 1 else np.nan
    if "Ensemble_Source" in objects.columns:
        src = objects["Ensemble_Source"]
        row["Ensemble_FractionUNet"] = float((src == "unet").mean()) if len(src) else np.nan
    log.info("%s: %d nuclei in %d field(s), %d features summarised", metadata, len(objects), n_fields, len(feats))
    return pd.DataFrame([row])


def plate_summary(well_rows: list[pd.DataFrame]) -> pd.DataFrame:
    """Stack per-well summary rows into the plate table, sorted by row and column."""
    df = pd.concat(well_rows, ignore_index=True)
    keys = [k for k in ("Metadata_Plate", "Metadata_Row", "Metadata_Column") if k in df.columns]
    if keys:
        df["_rowlen"] = df["Metadata_Row"].str.len() if "Metadata_Row" in df.columns else 0
        df = df.sort_values(["_rowlen", *keys] if "Metadata_Row" in df.columns else keys).drop(columns="_rowlen")
    log.info("plate summary: %d wells, %d nuclei", len(df), int(df["Count_Nuclei"].sum()) if "Count_Nuclei" in df else 0)
    return df.reset_index(drop=True)
