"""Snakemake script (rule oof_candidates): the fold-k models of both engines predict the annotated images of fold
k (which they did not train on); every candidate mask gets its features and its IoU with the truth."""
import logging

import numpy as np
import pandas as pd
import torch

from plateseg.engines import maskrcnn, unet
from plateseg.io.annotated import fold_split, load_annotated
from plateseg.ensemble.picker import engine_predictions, field_candidates
from plateseg.io.files import atomic_path, read_table, setup_logging, write_table
from plateseg.engines.runtime import runtime_device

setup_logging(snakemake.log[0])
log = logging.getLogger("plateseg.oof_candidates")
torch.set_num_threads(snakemake.threads)
p = snakemake.params
fold = snakemake.wildcards.fold
device = runtime_device()
models = {"unet": unet.load_checkpoint(snakemake.input.unet, device), "maskrcnn": maskrcnn.load_checkpoint(snakemake.input.maskrcnn, device)}
for engine, (_, meta) in models.items():
    if str(meta.get("fold")) != fold:
        raise ValueError(f"{engine} checkpoint of fold {fold} was trained as fold {meta.get('fold')!r}")

items, _ = load_annotated(p.annotations)
by_id = {image_id: (image, mask) for image_id, image, mask in items}
_, held_out = fold_split(list(by_id), read_table(snakemake.input.folds), fold)
tables, arrays = [], {}
for i, image_id in enumerate(held_out, start=1):
    image, truth = by_id[image_id]
    maps, labels, scores = engine_predictions(
        image, models["unet"], models["maskrcnn"], p.tile_size, p.halo, p.batch_size, p.watershed, p.detection, device
    )
    table = field_candidates(labels, maps, scores, truth=truth)
    table.insert(0, "image", image_id)
    table.insert(0, "fold", int(fold))
    tables.append(table)
    for engine, lab in labels.items():
        arrays[f"{image_id}/{engine}"] = lab.astype(np.uint32)
    log.info(
        "fold %s image %d/%d (%s): %d U-Net and %d Mask R-CNN candidates, mean IoU with the truth %.3f",
        fold, i, len(held_out), image_id, int(labels["unet"].max()), int(labels["maskrcnn"].max()),
        table["iou"].mean() if len(table) else float("nan"),
    )
write_table(pd.concat(tables, ignore_index=True), snakemake.output.table)
with atomic_path(snakemake.output.labels) as tmp:
    with open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
