"""What rule oof_candidates does for one fold: both engines predict annotated images they did not train
on, and every candidate mask gets its features and its IoU with the truth.

:func:`engine_predictions` runs both engines on one image and :func:`image_candidates` turns a list of
annotated images into a candidate table (used by the workflow and by ``bench/ensemble_dsb.py``).
"""
from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from plateseg.io.files import read_table, write_table

__all__ = ["engine_predictions", "image_candidates", "oof_candidates"]

log = logging.getLogger(__name__)


def engine_predictions(image, unet, maskrcnn, tile_size: int, halo: int, batch_size: int, watershed: dict,
                       detection: dict, device=None):
    """Both engines on one image: ``(maps, {"unet": labels, "maskrcnn": labels}, {"maskrcnn": scores})``.

    Parameters
    ----------
    image : array_like
        ``(C, h, w)`` image.
    unet, maskrcnn : tuple
        ``(model, meta)`` pairs of :func:`plateseg.engines.unet.load_checkpoint` and
        :func:`plateseg.engines.maskrcnn.load_checkpoint`.
    tile_size, halo, batch_size : int
        Tiled prediction settings of both engines.
    watershed : dict
        Keyword arguments of :func:`plateseg.segment.watershed.instances_from_maps` (with mode
        ``points``, the Mask R-CNN centroids are the markers).
    detection : dict
        Those of :func:`plateseg.engines.maskrcnn.predict_instances` (``score_threshold``,
        ``mask_threshold``, ``min_area``).
    device : str, optional

    Returns
    -------
    maps : numpy.ndarray
        ``(3, h, w)`` U-Net probabilities.
    labels : dict
        engine -> label image.
    scores : dict
        ``{"maskrcnn": {label: detection score}}``.

    Examples
    --------
    from plateseg.engines import maskrcnn, unet
    models = unet.load_checkpoint("unet.pt"), maskrcnn.load_checkpoint("maskrcnn.pt")
    maps, labels, scores = engine_predictions(image, *models, 256, 32, 2, {"mode": "centre"},
                                                  {"score_threshold": 0.5})
    """
    from plateseg.engines.maskrcnn import predict_instances
    from plateseg.engines.unet import predict_maps
    from plateseg.segment.watershed import instances_from_maps

    mlab, mtab = predict_instances(*maskrcnn, image, tile_size, halo, batch_size, device, **detection)
    maps = predict_maps(*unet, image, tile_size, halo, batch_size, device)
    ws = dict(watershed)
    if ws.get("mode") == "points":
        ws["points"] = mtab[["centroid_y", "centroid_x"]].to_numpy()
    ulab = instances_from_maps(maps, **ws)
    return maps, {"unet": ulab, "maskrcnn": mlab}, {"maskrcnn": dict(zip(mtab["label"].tolist(), mtab["score"].tolist()))}


def image_candidates(items, unet, maskrcnn, tile_size: int, halo: int, batch_size: int, watershed: dict,
                     detection: dict, device=None, name: str = "images"):
    """Candidates of annotated images: both engines' predictions, features and true IoU of each.

    Parameters
    ----------
    items : list of tuple
        ``(image id, image, true labels)`` (:func:`plateseg.io.annotated.load_annotated` items).
    unet, maskrcnn, tile_size, halo, batch_size, watershed, detection, device
        As :func:`engine_predictions`.
    name : str
        Names the set in the log lines.

    Returns
    -------
    table : pandas.DataFrame
        :func:`plateseg.ensemble.features.field_candidates` of every image, with ``image`` first.
    labels : dict
        image id -> {engine: uint32 label image}.

    Examples
    --------
    >>> image_candidates([], None, None, 64, 8, 1, {}, {})
    (Empty DataFrame
    Columns: []
    Index: [], {})
    """
    from plateseg.ensemble.features import field_candidates

    tables, labels = [], {}
    t0 = time.perf_counter()
    for i, (image_id, image, truth) in enumerate(items, start=1):
        maps, labs, scores = engine_predictions(image, unet, maskrcnn, tile_size, halo, batch_size, watershed,
                                                detection, device)
        table = field_candidates(labs, maps, scores, truth=truth)
        table.insert(0, "image", image_id)
        tables.append(table)
        labels[image_id] = {engine: lab.astype(np.uint32) for engine, lab in labs.items()}
        log.info("%s: image %d/%d (%s): %d U-Net and %d Mask R-CNN candidates, mean IoU with the truth %.3f "
                 "(%.0f s)", name, i, len(items), image_id, int(labs["unet"].max()), int(labs["maskrcnn"].max()),
                 table["iou"].mean() if len(table) else float("nan"), time.perf_counter() - t0)
    return (pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()), labels


def oof_candidates(fold, unet, maskrcnn, folds, annotations, table_out, labels_out, tile_size: int, halo: int,
                   batch_size: int, watershed: dict, detection: dict, threads: int | None = None) -> pd.DataFrame:
    """Rule oof_candidates: the fold-``fold`` models of both engines predict the annotated images of that
    fold (which they did not train on); every candidate mask gets its features and its IoU with the truth.

    Parameters
    ----------
    fold : str or int
        The held-out fold; both checkpoints must have been trained as this fold.
    unet, maskrcnn : path-like
        The fold's checkpoints.
    folds : path-like
        The fold table (:func:`plateseg.pipeline.folds.make_folds`).
    annotations : path-like
        The annotated folder.
    table_out, labels_out : path-like
        Outputs: the candidates (``fold``, ``image`` and :func:`image_candidates` columns) and
        their label images (:func:`plateseg.ensemble.features.save_candidate_labels`).
    tile_size, halo, batch_size, watershed, detection
        As :func:`engine_predictions`.
    threads : int, optional
        torch CPU threads.

    Returns
    -------
    pandas.DataFrame
        The candidate table written to ``table_out``.

    Examples
    --------
    oof_candidates(0, "results/models/unet/0.pt", "results/models/maskrcnn/0.pt",
                       "results/training/folds.csv", "resources/training", "candidates_0.parquet",
                       "candidates_0.npz", 256, 32, 2, {"mode": "centre"}, {"score_threshold": 0.5})
    """
    from plateseg.engines import maskrcnn as mrcnn_engine
    from plateseg.ensemble.features import save_candidate_labels
    from plateseg.engines import unet as unet_engine
    from plateseg.io.annotated import fold_split, load_annotated
    from plateseg.pipeline.run import torch_device

    device = torch_device(threads)
    fold = str(fold)
    models = {"unet": unet_engine.load_checkpoint(unet, device), "maskrcnn": mrcnn_engine.load_checkpoint(maskrcnn, device)}
    for engine, (_, meta) in models.items():
        if str(meta.get("fold")) != fold:
            raise ValueError(f"{engine} checkpoint of fold {fold} was trained as fold {meta.get('fold')!r}")
    items, _ = load_annotated(annotations)
    _, held_out = fold_split([it[0] for it in items], read_table(folds), fold)
    by_id = {it[0]: it for it in items}
    table, labels = image_candidates([by_id[i] for i in held_out], models["unet"], models["maskrcnn"], tile_size,
                                     halo, batch_size, watershed, detection, device, name=f"fold {fold}")
    table.insert(0, "fold", int(fold))
    write_table(table, table_out)
    save_candidate_labels(labels, labels_out)
    return table
