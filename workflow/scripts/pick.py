"""Snakemake script (rule pick): ensemble labels of a well, the best candidate of both engines per nucleus."""
from plateseg.io.files import setup_logging
from plateseg.pipeline.pick import pick_well

setup_logging(snakemake.log[0])
p, i = snakemake.params, snakemake.input
pick_well(i.maps, i.unet, i.maskrcnn, i.maskrcnn_table, i.picker, snakemake.output.labels, snakemake.output.picks,
          min_iou=p.min_iou, nms_iou=p.nms_iou, tile_size=p.tile_size, pixel_size=p.pixel_size,
          block_size=p.block_size, halo=p.block_halo, threads=snakemake.threads)
