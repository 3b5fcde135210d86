"""Snakemake script (rule segment_classical): classical baseline labels for every field of a well."""
from plateseg.io.files import setup_logging
from plateseg.pipeline.classical import classical_well

setup_logging(snakemake.log[0])
p = snakemake.params
classical_well(snakemake.input.image, snakemake.output[0], p.channel, p.settings, tile_size=p.tile_size,
               pixel_size=p.pixel_size, block_size=p.block_size, halo=p.block_halo, threads=snakemake.threads)
