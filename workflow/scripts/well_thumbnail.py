"""Snakemake script (rule well_thumbnail): the report's picture of one well, contours coloured by engine."""
from plateseg.io.files import setup_logging
from plateseg.pipeline.qc import well_thumbnail

setup_logging(snakemake.log[0])
well_thumbnail(snakemake.input.hcs, snakemake.input.objects, snakemake.output[0], snakemake.params.title)
