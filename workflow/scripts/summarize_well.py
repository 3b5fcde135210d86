"""Snakemake script (rule summarize_well): one summary row for a well."""
from plateseg.io.files import setup_logging
from plateseg.pipeline.measure import well_summary

setup_logging(snakemake.log[0])
well_summary(snakemake.input.objects, snakemake.input.image, snakemake.output[0], snakemake.params.metadata)
