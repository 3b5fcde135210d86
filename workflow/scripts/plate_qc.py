"""Snakemake script (rule plate_qc): plate heat maps of counts and intensities."""
from plateseg.io.files import read_table, setup_logging
from plateseg.measure.qc import plate_heatmaps

setup_logging(snakemake.log[0])
plate_heatmaps(read_table(snakemake.input[0]), list(snakemake.params.channels), snakemake.output[0])
