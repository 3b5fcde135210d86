"""Snakemake script (rule summarize_well): the well's profile row and summary row."""
from plateseg.io.files import setup_logging
from plateseg.pipeline.measure import well_summary

setup_logging(snakemake.log[0])
well_summary(snakemake.input.objects, snakemake.input.image, snakemake.output.profile, snakemake.output.summary,
             snakemake.params.metadata, snakemake.input.labels)
