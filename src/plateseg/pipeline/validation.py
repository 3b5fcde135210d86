"""Validation of fold models while they train, and the training of a fold model (rules train_unet_fold,
train_maskrcnn_fold), the U-Net's cross-validation (rule cross_validate_unet), and the check that keeps a
fine-tuned model only where it beats the model it started from (rule choose_model).

The engines know no watershed and no metrics: a fold model is scored here, on its held-out fold, with the
configured watershed (U-Net) and the Kaggle tie rule. The model on all data has nothing held out and is trained
by :func:`plateseg.pipeline.train.train_model`, which does not import this module, so a change in the
watershed or the metrics reruns the fold models and the cross-validation, never the model inference uses.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from plateseg.evaluation.metrics import dsb_map, evaluate_dataset, matching
from plateseg.io.files import read_table, write_table
from plateseg.segment.watershed import instances_from_maps

__all__ = ["evaluate_maps", "validate_unet", "validate_maskrcnn", "VALIDATORS", "train_fold", "cross_validate_unet",
           "finetune_scores", "choose_finetuned", "kept_initial"]

log = logging.getLogger(__name__)


def evaluate_maps(maps: np.ndarray, labels: np.ndarray, watershed: dict | None = None) -> dict:
    """Monitoring metrics of one image's maps against its labels (not the benchmark metrics).

    Returns foreground Dice (threshold 0.5) and, for instances from
    :func:`~plateseg.segment.watershed.instances_from_maps` with the keyword arguments
    ``watershed`` (None: that function's defaults), F1 at IoU 0.5 and the DSB-style mean over
    IoU thresholds 0.5:0.05:0.95 of TP / (TP + FP + FN), both by :mod:`plateseg.evaluation.metrics` with the
    Kaggle rule (a match needs IoU > t). Also the raw counts so that callers can pool over images.

    Examples
    --------
    >>> lab = np.zeros((20, 20), int); lab[2:8, 2:8] = 1; lab[10:18, 10:18] = 2
    >>> maps = np.stack([(lab > 0) * 1.0, np.zeros((20, 20)), np.zeros((20, 20))])
    >>> r = evaluate_maps(maps, lab)
    >>> r["dice"], r["f1_50"], r["ap"]
    (1.0, 1.0, 1.0)
    """
    fg_p = np.asarray(maps[0]) >= 0.5
    fg_t = np.asarray(labels) > 0
    denom = fg_p.sum() + fg_t.sum()
    inter = float((fg_p & fg_t).sum())
    dice = 1.0 if denom == 0 else 2.0 * inter / float(denom)
    pred = instances_from_maps(maps, **(watershed or {}))
    m = matching(labels, pred, thresh=0.5, tie="gt")
    ng, npred, tp50 = m["n_true"], m["n_pred"], m["tp"]
    f1 = 1.0 if ng + npred == 0 else 2.0 * tp50 / (ng + npred)
    return {"dice": dice, "f1_50": f1, "ap": dsb_map(labels, pred, tie="gt"), "inter": inter,
            "fg_sum": float(denom), "tp50": tp50, "n_gt": ng, "n_pred": npred}


def validate_unet(model, meta: dict, val, p, device) -> dict:
    """U-Net fold validation: tiled maps of the held-out images (``val_tile_size``, ``val_halo``), instances by
    the watershed ``p.val_watershed``; pooled Dice, F1 at IoU 0.5 and mean DSB mAP (``val_dice``,
    ``val_f1_50``, ``val_ap``). Pass as ``train_unet(..., val=(images, masks), validate=validate_unet)``.
    """
    from plateseg.engines.unet import predict_maps

    images, masks = val
    stats = []
    for img, lab in zip(images, masks):
        maps = predict_maps(model, meta, img, p.val_tile_size, p.val_halo, p.batch_size, device)
        stats.append(evaluate_maps(maps, lab, p.val_watershed))
    inter = sum(s["inter"] for s in stats)
    fg_sum = sum(s["fg_sum"] for s in stats)
    tp = sum(s["tp50"] for s in stats)
    n = sum(s["n_gt"] + s["n_pred"] for s in stats)
    return {
        "val_dice": 1.0 if fg_sum == 0 else 2.0 * inter / fg_sum,
        "val_f1_50": 1.0 if n == 0 else 2.0 * tp / n,
        "val_ap": float(np.mean([s["ap"] for s in stats])),
    }


def validate_maskrcnn(model, meta: dict, val, p, device) -> dict:
    """Mask R-CNN fold validation: tiled instances of the held-out images at ``val_score_threshold``; pooled F1
    at IoU 0.5, mean DSB mAP and the number of predicted objects (``val_f1_50``, ``val_ap``, ``val_n_pred``),
    matched with the Kaggle tie rule (IoU > t). Pass as ``train_maskrcnn(..., validate=validate_maskrcnn)``.
    """
    from plateseg.engines.maskrcnn import predict_instances

    images, masks = val
    tp = fp = fn = 0
    aps, n_pred = [], 0
    for img, lab in zip(images, masks):
        pred, _ = predict_instances(model, meta, img, p.val_tile_size, p.val_halo,
                                    p.batch_size, device, score_threshold=p.val_score_threshold)
        gt = np.asarray(lab)
        m = matching(gt, pred, 0.5, tie="gt")
        tp, fp, fn = tp + m["tp"], fp + m["fp"], fn + m["fn"]
        n_pred += int(m["n_pred"])
        aps.append(dsb_map(gt, pred, tie="gt"))
    return {"val_f1_50": 1.0 if tp + fp + fn == 0 else 2.0 * tp / (2 * tp + fp + fn),
            "val_ap": float(np.mean(aps)), "val_n_pred": n_pred}


#: the fold validation of each engine
VALIDATORS = {"unet": validate_unet, "maskrcnn": validate_maskrcnn}


def train_fold(engine: str, annotations, fold, out, settings: dict, folds, threads: int | None = None,
               initial=None, rescale="auto") -> dict:
    """Rules train_unet_fold, train_maskrcnn_fold: train ``engine`` without fold ``fold`` of the ``folds``
    table, validated on it every ``val_every`` epochs, and save the checkpoint at ``out``.

    Parameters are those of :func:`plateseg.pipeline.train.train_model` (``initial``: fine-tune that
    checkpoint, its images zoomed as ``rescale`` zooms at inference), plus ``fold`` (a fold number) and ``folds`` (the fold table). Returns the checkpoint's metadata (``fold``, ``train_ids``, ``val_ids``).
    """
    from plateseg.pipeline.train import train_model

    return train_model(engine, annotations, out, settings, threads=threads, fold=str(fold),
                       folds=read_table(folds), validate=VALIDATORS[engine], initial=initial, rescale=rescale)


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
    cross_validate_unet(["results/models/unet/0.pt"], "data/train", "cv.csv", {"mode": "centre"},
                            256, 32, 4)
    """
    from plateseg.engines.unet import load_checkpoint, predict_maps
    from plateseg.io.annotated import load_annotated
    from plateseg.pipeline.run import torch_device

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


def finetune_scores(engine: str, fold_models, initial, annotations, rescale="auto", pixel_size: float | None = None,
                    threads: int | None = None) -> pd.DataFrame:
    """Each fine-tuned fold model and the checkpoint it started from, scored on the fold's held-out images.

    The engine's fold validation (:data:`VALIDATORS`, with the fold model's validation settings) scores both on
    the images of fold k, which neither trained on, zoomed as fine-tuning zoomed them
    (:func:`plateseg.pipeline.train.finetune_items`). What rule choose_model decides on
    (:func:`choose_finetuned`), and how ``bench/finetune_schedule.py`` compares fine-tuning schedules.

    Parameters
    ----------
    engine : {"unet", "maskrcnn"}
    fold_models : list of path-like
        The fine-tuned fold checkpoints (their metadata names the held-out images).
    initial : path-like
        The checkpoint fine-tuning started from.
    annotations : path-like
        The annotated folder.
    rescale, pixel_size
        Config ``segmentation.rescale`` and the engine settings' ``pixel_size``, as for the fine-tuning.
    threads : int, optional
        torch CPU threads.

    Returns
    -------
    pandas.DataFrame
        Per fold and, last, for the mean over all held-out images (``fold`` "mean"): ``fold``, ``n_images``,
        ``dsb_map_finetuned``, ``dsb_map_initial``, ``f1_50_finetuned``, ``f1_50_initial``.
    """
    import importlib

    from plateseg.engines.base import params_from_meta
    from plateseg.io.annotated import load_annotated
    from plateseg.pipeline.run import torch_device
    from plateseg.pipeline.train import PARAMS, finetune_items

    module = importlib.import_module(f"plateseg.engines.{engine}")
    device = torch_device(threads)
    start, start_meta = module.load_checkpoint(initial, device)
    items, _ = load_annotated(annotations)
    rows = []
    for path in fold_models:
        model, meta = module.load_checkpoint(path, device)
        p = params_from_meta(getattr(module, PARAMS[engine]), meta)
        held_out = set(meta["val_ids"])
        zoomed, text = finetune_items([it for it in items if it[0] in held_out], start_meta, rescale, pixel_size)
        val = ([image for _, image, _ in zoomed], [mask for _, _, mask in zoomed])
        scores = {"finetuned": VALIDATORS[engine](model, meta, val, p, device),
                  "initial": VALIDATORS[engine](start, start_meta, val, p, device)}
        rows.append({"fold": str(meta["fold"]), "n_images": len(zoomed),
                     **{f"{m}_{name}": scores[name][f"val_{m}"] for m in ("ap", "f1_50") for name in scores}})
        log.info("fold %s (%d held-out images, %s): DSB mAP fine-tuned %.3f, %s %.3f", rows[-1]["fold"], len(zoomed),
                 text, rows[-1]["ap_finetuned"], initial, rows[-1]["ap_initial"])
    table = pd.DataFrame(rows).rename(columns=lambda c: c.replace("ap_", "dsb_map_"))
    n = table["n_images"].to_numpy(float)
    mean = {c: float(np.average(table[c], weights=n)) for c in table.columns if c.startswith(("dsb_map", "f1_50"))}
    return pd.concat([table, pd.DataFrame([{"fold": "mean", "n_images": int(n.sum()), **mean}])], ignore_index=True)


def choose_finetuned(engine: str, fold_models, tuned, initial, annotations, out_model, out_table,
                     rescale="auto", pixel_size: float | None = None, threads: int | None = None) -> pd.DataFrame:
    """Rule choose_model (``models.source: finetune``): the fine-tuned model, unless cross-validation on the
    annotated images says fine-tuning made the model worse than the one it started from.

    Each fold model (fine-tuned from ``initial`` without fold k) and ``initial`` itself are scored on fold k's
    images, which neither trained on (:func:`finetune_scores`). If the fold models' DSB mAP, averaged over every
    held-out image, is higher than ``initial``'s, ``tuned`` (the model fine-tuned on all images) is copied to
    ``out_model``; otherwise ``initial`` is, and the log says so.

    Parameters
    ----------
    engine : {"unet", "maskrcnn"}
    fold_models : list of path-like
        The fine-tuned fold checkpoints (their metadata names the held-out images and the start).
    tuned, initial : path-like
        The model fine-tuned on all annotated images, and the checkpoint fine-tuning started from.
    annotations : path-like
        The annotated folder.
    out_model, out_table : path-like
        Outputs: the chosen checkpoint (a copy), and the table of :func:`finetune_scores` with ``engine``,
        ``initial`` and ``choice`` (``"finetuned"`` or ``"initial"``) on every row.
    rescale : "auto", "none" or float
        Config ``segmentation.rescale``, as for the fine-tuning.
    pixel_size : float, optional
        The engine settings' ``pixel_size``, as for the fine-tuning.
    threads : int, optional
        torch CPU threads.

    Returns
    -------
    pandas.DataFrame
        The table.

    Examples
    --------
    choose_finetuned("unet", ["results/models/unet/0.pt", "results/models/unet/1.pt"], "results/models/unet/all.pt",
                     "models/dsb2018-fluo/unet.pt", "resources/training", "results/models/unet/final.pt",
                     "results/models/unet/finetune_check.csv")
    """
    import shutil

    from plateseg.io.files import atomic_path

    table = finetune_scores(engine, fold_models, initial, annotations, rescale, pixel_size, threads)
    mean = table.iloc[-1]
    choice = "finetuned" if mean["dsb_map_finetuned"] > mean["dsb_map_initial"] else "initial"
    table = table.assign(engine=engine, initial=str(initial), choice=choice)
    with atomic_path(out_model) as tmp:
        shutil.copyfile(tuned if choice == "finetuned" else initial, tmp)
    write_table(table, out_table)
    log.info("%s: fold models fine-tuned from %s score DSB mAP %.3f over %d held-out images, %s %.3f: %s", engine,
             initial, mean["dsb_map_finetuned"], int(mean["n_images"]), initial, mean["dsb_map_initial"],
             f"using the fine-tuned model {tuned}" if choice == "finetuned"
             else f"fine-tuning did not help; keeping {initial}")
    return table


def kept_initial(check_table) -> str | None:
    """The checkpoint rule choose_model kept instead of the fine-tuned model (its table's ``initial``), or None
    when it chose the fine-tuned model.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "check.csv"
    >>> pd.DataFrame({"fold": ["0", "mean"], "initial": "set/unet.pt", "choice": "initial"}).to_csv(f, index=False)
    >>> kept_initial(f)
    'set/unet.pt'
    """
    table = read_table(check_table)
    return str(table["initial"].iloc[-1]) if table["choice"].iloc[-1] == "initial" else None
