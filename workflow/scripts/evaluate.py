"""Snakemake script (rule evaluate): score a plate's label set against its ground truth."""
from pathlib import Path

from plateseg.evaluation.evaluate import evaluate_stores
from plateseg.io.files import setup_logging, write_table

setup_logging(snakemake.log[0])
stores = {Path(path).parent.name: path for path in snakemake.input.labels}
per_field, summary = evaluate_stores(snakemake.params.groundtruth, stores, snakemake.wildcards.labelset)
write_table(per_field, snakemake.output.fields)
write_table(summary, snakemake.output.summary)
