"""Snakemake script (rules train_unet, train_maskrcnn): train one model of an engine (params.engine).

Fold 'all' trains on every annotated image; fold k trains without fold k and is validated on it.
"""
import importlib
import logging

import torch

from plateseg.io.annotated import data_hash, fold_split, load_annotated
from plateseg.io.files import read_table, setup_logging
from plateseg.engines.runtime import runtime_device

setup_logging(snakemake.log[0])
p = snakemake.params
engine = importlib.import_module(f"plateseg.engines.{p.engine}")
log = logging.getLogger(f"plateseg.train_{p.engine}")
torch.set_num_threads(snakemake.threads)
fold = snakemake.wildcards.fold
params = dict(p.settings, device=runtime_device())

items, _ = load_annotated(p.annotations)
by_id = {image_id: (image, mask) for image_id, image, mask in items}
folds = read_table(snakemake.input.folds) if fold != "all" else None
train_ids, val_ids = fold_split(list(by_id), folds, fold)
log.info("%s fold %s: %d training images, %d held out (%s)", p.engine, fold, len(train_ids), len(val_ids), p.annotations)
val = ([by_id[i][0] for i in val_ids], [by_id[i][1] for i in val_ids]) if val_ids else None
train = getattr(engine, f"train_{p.engine}")
model, history = train(
    [by_id[i][0] for i in train_ids], [by_id[i][1] for i in train_ids], params, log=logging.getLogger(f"plateseg.engines.{p.engine}"), val=val
)
meta = engine.checkpoint_meta(
    params, data_hash=data_hash(p.annotations), history=history, fold=fold, train_ids=train_ids, val_ids=val_ids
)
engine.save_checkpoint(snakemake.output[0], model, meta)
log.info("checkpoint written to %s", snakemake.output[0])
