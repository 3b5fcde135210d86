"""Snakemake script (rules train_unet, train_maskrcnn): train the model of an engine (params.engine) on every
annotated image: the model inference uses."""
from plateseg.io.files import setup_logging
from plateseg.pipeline.train import train_model

setup_logging(snakemake.log[0])
p = snakemake.params
train_model(p.engine, p.annotations, snakemake.output[0], p.settings, threads=snakemake.threads, initial=p.initial, rescale=p.rescale)
