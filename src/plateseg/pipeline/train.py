"""What the training rules do: one fold model of an engine, the U-Net's cross-validation.

Each function is one rule for one fold (or all folds) and writes its output atomically.
"""
from __future__ import annotations

import logging

import pandas as pd

from plateseg.io.files import read_table, write_table

__all__ = ["train_fold", "cross_validate_unet"]

log = logging.getLogger(__name__)


def train_fold(engine: str, annotations, fold, out, settings: dict, folds=None, threads: int | None = None):
    """Rules train_unet, train_maskrcnn: train one model of ``engine`` and save its checkpoint at ``out``.

    Fold ``"all"`` trains on every annotated image; fold ``k`` trains without fold ``k`` of the
    ``folds`` table and is validated on it.

    Parameters
    ----------
    engine : {"unet", "maskrcnn"}
        The engine module of :mod:`plateseg.engines`.
    annotations : path-like
        The annotated folder.
    fold : str or int
        ``"all"`` or a fold number.
    out : path-like
        The checkpoint.
    settings : dict
        The engine's settings (``UNetParams`` / ``MaskRCNNParams`` fields); the device is the job's.
    folds : path-like, optional
        The fold table (needed unless ``fold`` is ``"all"``).
    threads : int, optional
        torch CPU threads.

    Returns
    -------
    dict
        The checkpoint's metadata.

    Examples
    --------
    >>> train_fold("unet", "data/train", "all", "results/models/unet/all.pt", {"epochs": 2})  # doctest: +SKIP
    """
    from plateseg.io.annotated import data_hash, fold_split, load_annotated
    from plateseg.pipeline.run import torch_device

    from plateseg.engines import maskrcnn, unet

    module = {"unet": unet, "maskrcnn": maskrcnn}[engine]
    params = dict(settings, device=torch_device(threads))
    fold = str(fold)
    items, _ = load_annotated(annotations)
    by_id = {image_id: (image, mask) for image_id, image, mask in items}
    train_ids, val_ids = fold_split(list(by_id), read_table(folds) if fold != "all" else None, fold)
    log.info("%s fold %s: %d training images, %d held out (%s)", engine, fold, len(train_ids), len(val_ids), annotations)
    val = ([by_id[i][0] for i in val_ids], [by_id[i][1] for i in val_ids]) if val_ids else None
    train = getattr(module, f"train_{engine}")
    model, history = train([by_id[i][0] for i in train_ids], [by_id[i][1] for i in train_ids], params,
                           log=logging.getLogger(f"plateseg.engines.{engine}"), val=val)
    meta = module.checkpoint_meta(params, data_hash=data_hash(annotations), history=history, fold=fold,
                                  train_ids=train_ids, val_ids=val_ids)
    module.save_checkpoint(out, model, meta)
    log.info("checkpoint written to %s", out)
    return meta


def cross_validate_unet(models, annotations, out, watershed: dict, tile_size: int, halo: int, batch_size: int,
                        threads: int | None = None) -> pd.DataFrame:
    """Rule cross_validate_unet: each fold model scored on the images it did not see, plus their mean.

    Parameters
    ----------
    models : list of path-like
        The fold checkpoints (their metadata names the held-out images).
    annotations : path-like
        The annotated folder.
    out : path-like
        The table: one row per fold (``fold``, image counts, epochs, final loss, DSB mAP,
        precision/recall/F1 at IoU 0.5, object counts, ``data_hash``) and a ``mean`` row.
    watershed : dict
        Keyword arguments of :func:`plateseg.segment.watershed.instances_from_maps`.
    tile_size, halo, batch_size : int
        As :func:`plateseg.engines.unet.predict_maps`.
    threads : int, optional
        torch CPU threads.

    Returns
    -------
    pandas.DataFrame

    Examples
    --------
    >>> cross_validate_unet(["results/models/unet/0.pt"], "data/train", "cv.csv", {"mode": "centre"},
    ...                     256, 32, 4)  # doctest: +SKIP
    """
    from plateseg.engines.unet import load_checkpoint, predict_maps
    from plateseg.evaluation.metrics import evaluate_dataset
    from plateseg.io.annotated import load_annotated
    from plateseg.pipeline.run import torch_device
    from plateseg.segment.watershed import instances_from_maps

    device = torch_device(threads)
    items, _ = load_annotated(annotations)
    by_id = {image_id: (image, mask) for image_id, image, mask in items}
    rows = []
    for path in models:
        model, meta = load_checkpoint(path, device)
        masks = [by_id[image_id][1] for image_id in meta["val_ids"]]
        preds = [instances_from_maps(predict_maps(model, meta, by_id[image_id][0], tile_size, halo, batch_size), **watershed)
                 for image_id in meta["val_ids"]]
        _, s = evaluate_dataset(masks, preds)
        last = meta["history"][-1] if meta["history"] else {}
        row = {
            "fold": str(meta["fold"]),
            "n_train": len(meta["train_ids"]),
            "n_val": len(meta["val_ids"]),
            "epochs": len(meta["history"]),
            "final_loss": last.get("loss"),
            "mean_dsb_map": s.get("mean_dsb_map", float("nan")),
            "precision_50": s.get("pooled_precision_50", float("nan")),
            "recall_50": s.get("pooled_recall_50", float("nan")),
            "f1_50": s.get("pooled_f1_50", float("nan")),
            "n_true": s.get("total_n_true", 0),
            "n_pred": s.get("total_n_pred", 0),
            "data_hash": meta["data_hash"],
        }
        log.info("fold %s: %d held-out images, DSB mAP %.3f, F1@0.5 %.3f", row["fold"], row["n_val"], row["mean_dsb_map"], row["f1_50"])
        rows.append(row)
    table = pd.DataFrame(rows)
    mean = table.drop(columns=["fold", "data_hash"]).mean(numeric_only=True)
    table = pd.concat([table, pd.DataFrame([{**mean.to_dict(), "fold": "mean", "data_hash": rows[0]["data_hash"]}])],
                      ignore_index=True)
    write_table(table, out)
    return table
