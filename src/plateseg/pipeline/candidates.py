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

__all__ = ["engine_predictions", "image_candidates", "downscaled_copies", "oof_candidates"]

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


def downscaled_copies(items, diameters=(11.0, 15.0), max_zoom: float = 0.85, min_objects: int = 5):
    """Shrunk copies of annotated images whose nuclei are brought to each target diameter (more small-nucleus
    candidates for the picker from the same held-out images).

    For each image and each target ``d`` of ``diameters``, the zoom is ``d / D`` with ``D`` the image's median
    true nucleus diameter (:func:`plateseg.engines.scale.median_diameter`); zooms above ``max_zoom`` are skipped
    (only shrinking: a copy must differ from its source), as are images with fewer than ``min_objects`` nuclei.
    The image is zoomed by :func:`plateseg.engines.scale.zoom_image` (linear, anti-aliased), the truth by
    nearest neighbour to the same shape; nuclei that vanish are gone from the copy's truth (its labels are
    renumbered 1..n).

    Parameters
    ----------
    items : list of tuple
        ``(image id, (C, h, w) image, true labels)`` items.
    diameters : sequence of float
        Target median nucleus diameters (pixels) of the copies.
    max_zoom : float
        The largest zoom made (below 1).
    min_objects : int
        Images with fewer true nuclei get no copies.

    Returns
    -------
    list of tuple
        ``(copy id, image, labels, source id, zoom)``; the copy id is ``"<source id>@<zoom:.3f>"``. Every copy
        must be grouped with its source whenever images are held out (it is the same field).

    Examples
    --------
    >>> lab = np.zeros((64, 64), np.uint16)
    >>> for k in range(6): lab[4 + 10 * k: 14 + 10 * k, 20:30] = k + 1
    >>> copies = downscaled_copies([("a", np.ones((1, 64, 64)), lab)], diameters=(5.6, 20.0))
    >>> [(c[0], c[1].shape, int(c[2].max()), c[3]) for c in copies]
    [('a@0.496', (1, 32, 32), 6, 'a')]
    """
    from skimage.segmentation import relabel_sequential

    from plateseg.engines.scale import median_diameter, resize_labels, zoom_image

    out = []
    for image_id, image, truth in items:
        diameter = median_diameter(truth, min_objects=min_objects)
        if diameter is None:
            continue
        for target in diameters:
            zoom = round(float(target) / diameter, 3)
            if zoom > max_zoom or zoom <= 0:
                continue
            small = zoom_image(image, zoom)
            lab = resize_labels(np.asarray(truth), small.shape[-2:])
            lab = relabel_sequential(lab)[0]
            out.append((f"{image_id}@{zoom:.3f}", small, lab, image_id, zoom))
    return out


def oof_candidates(fold, unet, maskrcnn, folds, annotations, table_out, labels_out, tile_size: int, halo: int,
                   batch_size: int, watershed: dict, detection: dict, threads: int | None = None,
                   checks=()) -> pd.DataFrame:
    """Rule oof_candidates: the fold-``fold`` models of both engines predict the annotated images of that
    fold (which they did not train on); every candidate mask gets its features and its IoU with the truth.

    With ``models.source: finetune``, an engine whose fine-tuned model rule choose_model rejected (its table in
    ``checks``) predicts with the model inference will use instead, the one fine-tuning started from (it saw none
    of the annotated images), so the picker learns the candidates it will be given.

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
    checks : sequence of path-like
        Tables of rule choose_model (:func:`plateseg.pipeline.validation.choose_finetuned`), if any.

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
    from plateseg.pipeline.validation import kept_initial

    device = torch_device(threads)
    fold = str(fold)
    paths = {"unet": unet, "maskrcnn": maskrcnn}
    kept = {read_table(c)["engine"].iloc[-1]: kept_initial(c) for c in checks}
    kept = {engine: path for engine, path in kept.items() if path}
    for engine, path in kept.items():
        log.info("%s: fine-tuning was rejected by rule choose_model; candidates by %s, the model inference uses",
                 engine, path)
    paths.update(kept)
    models = {"unet": unet_engine.load_checkpoint(paths["unet"], device),
              "maskrcnn": mrcnn_engine.load_checkpoint(paths["maskrcnn"], device)}
    for engine, (_, meta) in models.items():
        if engine not in kept and str(meta.get("fold")) != fold:
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
