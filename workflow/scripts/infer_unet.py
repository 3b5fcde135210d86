"""Snakemake script (rule infer_unet): U-Net maps of every field of a well, resumable tile by tile."""
import torch

from plateseg.pipeline.infer import infer_well_maps
from plateseg.io.files import setup_logging
from plateseg.engines.runtime import runtime_device

setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
p = snakemake.params
infer_well_maps(
    snakemake.input.image,
    snakemake.input.model,
    snakemake.output[0],
    channels=[p.channel],
    tile_size=p.tile_size,
    halo=p.halo,
    batch_size=p.batch_size,
    device=runtime_device(),
    pixel_size=p.pixel_size,
    attrs={"plate": snakemake.wildcards.plate, "well": snakemake.wildcards.well},
)
