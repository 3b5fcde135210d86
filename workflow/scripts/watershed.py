"""Snakemake script (rule watershed): instance labels from a well's U-Net maps."""
import numpy as np

from plateseg.io import setup_logging
from plateseg.ngff import segment_well
from plateseg.watershed import instances_from_maps

setup_logging(snakemake.log[0])
p = snakemake.params
segment_well(
    snakemake.input.maps,
    snakemake.output[0],
    lambda maps: instances_from_maps(maps[...].astype(np.float32), **p.settings),
    tile_size=p.tile_size,
    pixel_size=p.pixel_size,
    attrs={"method": "unet", "watershed": dict(p.settings)},
    describe=f"markers {p.settings['mode']}",
)
