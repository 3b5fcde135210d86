"""Snakemake script (rule watershed): instance labels from a well's U-Net maps (markers from config; 'points':
the centroids of the well's Mask R-CNN instances, seed 003)."""
import numpy as np

from plateseg.io.files import read_table, setup_logging
from plateseg.io.ngff import segment_well
from plateseg.segment.watershed import instances_from_maps

setup_logging(snakemake.log[0])
p = snakemake.params
settings = dict(p.settings)
points = None
if settings["mode"] == "points":
    table = read_table(snakemake.input.points)
    points = {f: t[["centroid_y", "centroid_x"]].to_numpy() for f, t in table.groupby("field")}


def segment(maps, field):
    pts = None if points is None else points.get(field, np.zeros((0, 2)))
    return instances_from_maps(maps[...].astype(np.float32), points=pts, **settings)


segment_well(
    snakemake.input.maps,
    snakemake.output[0],
    segment,
    tile_size=p.tile_size,
    pixel_size=p.pixel_size,
    attrs={"method": "unet", "watershed": settings},
    describe=f"markers {settings['mode']}",
)
