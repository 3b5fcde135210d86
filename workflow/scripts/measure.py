"""Snakemake script (rule measure): per-object table, profile and summary rows and the report's picture of one
well (ensemble columns only with the picks)."""
from plateseg.io.files import setup_logging
from plateseg.pipeline.measure import measure_well_tables

setup_logging(snakemake.log[0])
i, o = snakemake.input, snakemake.output
measure_well_tables(i.image, i.labels, o.objects, o.profile, o.summary, o.thumbnail, snakemake.params.metadata,
                    f"{snakemake.wildcards.plate} {snakemake.wildcards.well}", picks=i.get("picks"),
                    cells=i.get("cells"), cytoplasm=i.get("cytoplasm"), block_size=snakemake.params.block_size,
                    threads=snakemake.threads)
