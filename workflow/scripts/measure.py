"""Snakemake script (rule measure): per-object table of one well."""
import logging

from plateseg.io import setup_logging, write_table
from plateseg.measure import measure_well

setup_logging(snakemake.log[0])
objects = measure_well(snakemake.input.image, snakemake.input.labels, dict(snakemake.params.metadata), snakemake.params.source)
logging.getLogger("plateseg.measure").info("%d objects measured", len(objects))
write_table(objects, snakemake.output[0])
