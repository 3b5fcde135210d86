"""Snakemake script (rule plate_summary): stack the per-well profiles and summaries of a plate."""
from plateseg.io.files import setup_logging
from plateseg.pipeline.measure import plate_tables

setup_logging(snakemake.log[0])
plate_tables(snakemake.input.profiles, snakemake.input.summaries, snakemake.output.profiles, snakemake.output.summary)
