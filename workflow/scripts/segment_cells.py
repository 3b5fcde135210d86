"""Snakemake script (rule segment_cells): cells grown from the final nuclei on the cell stain, and their cytoplasm."""
from plateseg.io.files import setup_logging
from plateseg.pipeline.cells import cells_well

setup_logging(snakemake.log[0])
p = snakemake.params
cells_well(snakemake.input.image, snakemake.input.nuclei, snakemake.output.cells, snakemake.output.cytoplasm,
           p.channel, p.settings, tile_size=p.tile_size, pixel_size=p.pixel_size, block_size=p.block_size,
           halo=p.block_halo, threads=snakemake.threads)
