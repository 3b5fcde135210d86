"""Snakemake script (rule measure): per-object table of one well (ensemble columns only with the picks)."""
from plateseg.io.files import setup_logging
from plateseg.pipeline.measure import measure_objects

setup_logging(snakemake.log[0])
measure_objects(snakemake.input.image, snakemake.input.labels, snakemake.output[0], snakemake.params.metadata,
                picks=snakemake.input.get("picks"), cells=snakemake.input.get("cells"),
                cytoplasm=snakemake.input.get("cytoplasm"), block_size=snakemake.params.block_size,
                threads=snakemake.threads)
