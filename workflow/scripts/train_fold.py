"""Snakemake script (rules train_unet_fold, train_maskrcnn_fold): train an engine (params.engine) without fold k
and validate it on fold k every val_every epochs."""
from plateseg.io.files import setup_logging
from plateseg.pipeline.validation import train_fold

setup_logging(snakemake.log[0])
p = snakemake.params
train_fold(p.engine, p.annotations, snakemake.wildcards.fold, snakemake.output[0], p.settings, snakemake.input.folds,
           threads=snakemake.threads, initial=p.initial, rescale=p.rescale)
