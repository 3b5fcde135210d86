"""Snakemake script (rule watershed): instance labels from a well's U-Net maps (markers from config; 'points':
the centroids of the well's Mask R-CNN instances, seed 003)."""
from plateseg.io.files import setup_logging
from plateseg.pipeline.watershed import watershed_well

setup_logging(snakemake.log[0])
p = snakemake.params
watershed_well(snakemake.input.maps, snakemake.output[0], p.settings, points=snakemake.input.get("points"),
               tile_size=p.tile_size, pixel_size=p.pixel_size, block_size=p.block_size,
               halo=p.block_halo, threads=snakemake.threads)
