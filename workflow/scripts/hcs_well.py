"""Snakemake script (rule hcs_well): one well of the OME-Zarr HCS plate, image pyramids and label sets."""
from plateseg.io.files import setup_logging
from plateseg.io.hcs import write_hcs_well

setup_logging(snakemake.log[0])
write_hcs_well(snakemake.input.image, dict(zip(snakemake.params.names, snakemake.input.labels)), snakemake.output[0],
               snakemake.wildcards.row, int(snakemake.wildcards.column), snakemake.params.tile_size)
