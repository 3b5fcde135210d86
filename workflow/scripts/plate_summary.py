"""Snakemake script (rule plate_summary): stack the per-well rows of a plate."""
from plateseg.io.files import read_table, setup_logging, write_table
from plateseg.measure.summarize import plate_summary

setup_logging(snakemake.log[0])
write_table(plate_summary([read_table(p) for p in snakemake.input]), snakemake.output[0])
