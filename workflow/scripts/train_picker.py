"""Snakemake script (rule train_picker): the LightGBM picker on the out-of-fold candidates of every fold."""
from plateseg.io.files import setup_logging
from plateseg.pipeline.picker import train_picker_files

setup_logging(snakemake.log[0])
o = snakemake.output
train_picker_files(snakemake.input.candidates, o.picker, o.importances, o.figure, params=snakemake.params.picker)
