"""Snakemake script (rules train_unet, train_maskrcnn): train one model of an engine (params.engine); fold 'all'
trains on every annotated image, fold k trains without fold k and is validated on it."""
from plateseg.io.files import setup_logging
from plateseg.pipeline.train import train_fold

setup_logging(snakemake.log[0])
p = snakemake.params
train_fold(p.engine, p.annotations, snakemake.wildcards.fold, snakemake.output[0], p.settings,
           folds=snakemake.input.get("folds"), threads=snakemake.threads)
