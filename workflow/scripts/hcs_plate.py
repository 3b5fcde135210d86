"""Snakemake script (rule hcs_plate): the plate group of the OME-Zarr HCS plate."""
from pathlib import Path

from plateseg.io.files import setup_logging
from plateseg.io.hcs import write_hcs_plate

setup_logging(snakemake.log[0])
write_hcs_plate(Path(snakemake.output[0]).parent, snakemake.wildcards.plate, snakemake.params.wells,
                snakemake.params.field_count)
