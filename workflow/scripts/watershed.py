"""Snakemake script (rule watershed): instance labels from a well's U-Net maps."""
import logging

import numpy as np

from plateseg.io import setup_logging
from plateseg.ngff import list_fields, open_field, write_well_labels
from plateseg.watershed import instances_from_maps

setup_logging(snakemake.log[0])
log = logging.getLogger("plateseg.watershed")
p = snakemake.params
maps = snakemake.input.maps
fields = list_fields(maps)


def labelled_fields():
    for i, field in enumerate(fields, start=1):
        labels = instances_from_maps(open_field(maps, field)[...].astype(np.float32), **p.settings)
        log.info("field %d (%d/%d): %d nuclei (markers %s)", field, i, len(fields), labels.max(), p.settings["mode"])
        yield field, labels


write_well_labels(
    snakemake.output[0],
    labelled_fields(),
    tile_size=p.tile_size,
    pixel_size=p.pixel_size,
    attrs={"method": "unet", "watershed": dict(p.settings)},
)
