"""Snakemake script (rule measure): per-object table of one well."""
import logging

from plateseg.io.files import read_table, setup_logging, write_table
from plateseg.measure.objects import measure_well

setup_logging(snakemake.log[0])
picks = read_table(snakemake.input.picks) if "picks" in snakemake.input.keys() else None
objects = measure_well(snakemake.input.image, snakemake.input.labels, dict(snakemake.params.metadata), snakemake.params.source, picks)
logging.getLogger("plateseg.measure.objects").info("%d objects measured", len(objects))
write_table(objects, snakemake.output[0])
