"""Snakemake script (rule summarize_well): one summary row for a well."""
from plateseg.io.files import read_table, setup_logging, write_table
from plateseg.io.ngff import list_fields
from plateseg.measure.summarize import summarize_well

setup_logging(snakemake.log[0])
row = summarize_well(
    read_table(snakemake.input.objects),
    dict(snakemake.params.metadata),
    n_fields=len(list_fields(snakemake.input.image)),
)
write_table(row, snakemake.output[0])
