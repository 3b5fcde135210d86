"""Score label stores against ground-truth label images (the metrics of plateseg.evaluation.metrics)."""
from __future__ import annotations

import logging

import pandas as pd

from plateseg.io.ingest import read_plane
from plateseg.evaluation.metrics import evaluate_dataset
from plateseg.io.ngff import read_labels

__all__ = ["evaluate_stores"]

log = logging.getLogger(__name__)


def evaluate_stores(groundtruth, stores: dict, labelset: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Evaluate the label stores of a plate's wells field by field.

    Parameters
    ----------
    groundtruth : list of (well, field, path)
        Ground-truth label image file of each field to score.
    stores : dict
        well -> label store path.
    labelset : str
        Name of the label set (e.g. ``classical``), written into the tables.

    Returns
    -------
    per_field : DataFrame
        One row per field: ``Metadata_Well``, ``Metadata_Site`` (the field) and every per-image metric.
    summary : DataFrame
        One row: the dataset metrics (means over fields, totals, COCO AP over all fields).
    """
    gts, preds, keys = [], [], []
    for i, (well, field, path) in enumerate(groundtruth, start=1):
        gts.append(read_plane(path))
        preds.append(read_labels(stores[well], field))
        if gts[-1].shape != preds[-1].shape:
            raise ValueError(f"{path}: ground truth shape {gts[-1].shape} != labels shape {preds[-1].shape} (well {well}, field {field})")
        keys.append((well, int(field)))
        log.info("read field %d/%d (%s field %d)", i, len(groundtruth), well, field)
    per_image, summary = evaluate_dataset(gts, preds)
    per_image.insert(0, "Metadata_Site", [k[1] for k in keys])
    per_image.insert(0, "Metadata_Well", [k[0] for k in keys])
    per_image.insert(0, "labelset", labelset)
    log.info("%s: mean DSB mAP %.3f, F1@0.5 %.3f over %d fields", labelset, summary["mean_dsb_map"], summary["mean_f1_50"], len(keys))
    summary = pd.DataFrame([{"labelset": labelset, "n_fields": len(keys), **summary}])
    return per_image, summary
