"""Snakemake script (rule train_unet): train one U-Net (fold 'all' on every image, fold k without fold k)."""
import logging
import os

import torch

from plateseg.annotated import data_hash, load_annotated
from plateseg.io import read_table, setup_logging
from plateseg.unet import checkpoint_meta, save_checkpoint, train_unet

setup_logging(snakemake.log[0])
log = logging.getLogger("plateseg.train_unet")
torch.set_num_threads(snakemake.threads)
p = snakemake.params
fold = snakemake.wildcards.fold
# the device is a runtime setting: PLATESEG_DEVICE=auto|cpu|cuda|cuda:N (default auto: CUDA when present)
params = dict(p.unet, device=os.environ.get("PLATESEG_DEVICE", "auto"))

items, _ = load_annotated(p.annotations)
ids = [image_id for image_id, _, _ in items]
if fold == "all":
    val_ids = []
else:
    folds = read_table(snakemake.input.folds)
    if int(fold) not in set(folds["fold"]):
        raise ValueError(f"fold {fold} does not exist: config key training.folds gives folds 0..{folds['fold'].max()}")
    fold_of = dict(zip(folds["id"].astype(str), folds["fold"].astype(int)))
    val_ids = [i for i in ids if fold_of[i] == int(fold)]
train_ids = [i for i in ids if i not in set(val_ids)]
by_id = {image_id: (image, mask) for image_id, image, mask in items}
log.info("fold %s: %d training images, %d held out (%s)", fold, len(train_ids), len(val_ids), p.annotations)
val = ([by_id[i][0] for i in val_ids], [by_id[i][1] for i in val_ids]) if val_ids else None
model, history = train_unet(
    [by_id[i][0] for i in train_ids], [by_id[i][1] for i in train_ids], params, log=logging.getLogger("plateseg.unet"), val=val
)
meta = checkpoint_meta(
    params, data_hash=data_hash(p.annotations), history=history, fold=fold, train_ids=train_ids, val_ids=val_ids
)
save_checkpoint(snakemake.output[0], model, meta)
log.info("checkpoint written to %s", snakemake.output[0])
