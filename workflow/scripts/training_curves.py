"""Snakemake script (rule training_curves): the engines' training curves from their checkpoints."""
from plateseg.io.files import setup_logging
from plateseg.pipeline.qc import model_curves

setup_logging(snakemake.log[0])
model_curves(dict(snakemake.input.items()), snakemake.output[0])
