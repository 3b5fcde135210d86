"""Snakemake script (rule cross_validate_unet): each fold model scored on the images it did not see."""
import logging

import pandas as pd
import torch

from plateseg.io.annotated import load_annotated
from plateseg.io.files import setup_logging, write_table
from plateseg.evaluation.metrics import evaluate_dataset
from plateseg.engines.runtime import runtime_device
from plateseg.engines.unet import load_checkpoint, predict_maps
from plateseg.segment.watershed import instances_from_maps

setup_logging(snakemake.log[0])
log = logging.getLogger("plateseg.cross_validate_unet")
torch.set_num_threads(snakemake.threads)
p = snakemake.params
items, _ = load_annotated(p.annotations)
by_id = {image_id: (image, mask) for image_id, image, mask in items}

rows = []
for path in snakemake.input.models:
    model, meta = load_checkpoint(path, runtime_device())
    masks = [by_id[image_id][1] for image_id in meta["val_ids"]]
    preds = [
        instances_from_maps(predict_maps(model, meta, by_id[image_id][0], p.tile_size, p.halo, p.batch_size), **p.watershed)
        for image_id in meta["val_ids"]
    ]
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
table = pd.concat([table, pd.DataFrame([{**mean.to_dict(), "fold": "mean", "data_hash": rows[0]["data_hash"]}])], ignore_index=True)
write_table(table, snakemake.output[0])
