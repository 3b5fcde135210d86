"""Snakemake script (rules infer_unet, infer_maskrcnn): the engine's (params.engine) inference of every field of a
well, resumable tile by tile; outputs: the U-Net maps, or the Mask R-CNN labels and their table."""
from plateseg.io.files import setup_logging
from plateseg.pipeline.infer import infer_well

setup_logging(snakemake.log[0])
p = snakemake.params
infer_well(p.engine, snakemake.input.image, snakemake.input.model, *snakemake.output, channel=p.channel,
           settings=p.get("settings", {}), threads=snakemake.threads, scale=snakemake.input.scale,
           tile_size=p.tile_size, halo=p.halo, batch_size=p.batch_size, pixel_size=p.pixel_size,
           attrs={"plate": snakemake.wildcards.plate, "well": snakemake.wildcards.well})
