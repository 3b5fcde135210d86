"""What rule cross_validate_ensemble does: every method on the annotated images, each image scored by
models that did not train on it."""
from __future__ import annotations

import logging

import pandas as pd

from plateseg.io.files import read_table, write_table

__all__ = ["cross_validate_ensemble"]

log = logging.getLogger(__name__)


def cross_validate_ensemble(candidates, labels, annotations, summary_out, candidates_out, picker=None,
                            classical: dict | None = None, min_iou: float = 0.3, nms_iou: float = 0.3):
    """Rule cross_validate_ensemble: classical baseline, U-Net, Mask R-CNN, ensemble and oracle on the
    annotated images, every image scored by models (engines and picker) that did not train on it.

    Parameters
    ----------
    candidates, labels : list of path-like
        The outputs of :func:`plateseg.pipeline.candidates.oof_candidates` of every fold.
    annotations : path-like
        The annotated folder (truths and images of the classical baseline).
    summary_out, candidates_out : path-like
        Outputs: :func:`plateseg.ensemble.compare.compare_methods` summary, and the candidates
        with their cross-validated ``predicted_iou``.
    picker : PickerParams or dict, optional
    classical : dict, optional
        Settings of :func:`plateseg.segment.classical.segment_classical`.
    min_iou, nms_iou : float
        As :func:`plateseg.ensemble.pick.pick`.

    Returns
    -------
    pandas.DataFrame
        The summary.

    Examples
    --------
    cross_validate_ensemble(["candidates_0.parquet", "candidates_1.parquet"],
                                ["candidates_0.npz", "candidates_1.npz"], "resources/training",
                                "cv_metrics.csv", "cv_candidates.parquet")
    """
    from plateseg.ensemble.compare import compare_methods
    from plateseg.ensemble.features import load_candidate_labels
    from plateseg.ensemble.picker import cross_validated_predictions
    from plateseg.io.annotated import load_annotated
    from plateseg.segment.classical import segment_classical

    table = pd.concat([read_table(path) for path in candidates], ignore_index=True)
    table["predicted_iou"] = cross_validated_predictions(table, picker)
    labs = load_candidate_labels(labels)
    items, _ = load_annotated(annotations)
    truths = {image_id: mask for image_id, _, mask in items if image_id in labs}
    baseline = {image_id: segment_classical(image[0], **(classical or {})) for image_id, image, _ in items
                if image_id in labs}
    summary, _ = compare_methods(table, labs, truths, {"classical": baseline}, min_iou=min_iou, nms_iou=nms_iou)
    for row in summary.itertuples():
        log.info("%s: DSB mAP %.3f, AP50 %.3f, F1@0.5 %.3f", row.method, row.mean_dsb_map, row.coco_AP50, row.pooled_f1_50)
    write_table(summary, summary_out)
    write_table(table, candidates_out)
    return summary
