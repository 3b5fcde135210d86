"""Snakemake script (rule hcs_row): the group of one row of the OME-Zarr HCS plate."""
from pathlib import Path

from plateseg.io.files import setup_logging
from plateseg.io.hcs import write_hcs_row

setup_logging(snakemake.log[0])
write_hcs_row(Path(snakemake.output[0]).parents[1], snakemake.wildcards.row)
