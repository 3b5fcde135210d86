"""Snakemake script (rule segment_classical): classical baseline labels for every field of a well."""
from plateseg.segment.classical import segment_classical
from plateseg.io.files import setup_logging
from plateseg.io.ngff import segment_well

setup_logging(snakemake.log[0])
p = snakemake.params
segment_well(
    snakemake.input.image,
    snakemake.output[0],
    lambda image, field: segment_classical(image[p.channel], **p.settings),
    tile_size=p.tile_size,
    pixel_size=p.pixel_size,
    attrs={"method": "classical", "settings": dict(p.settings)},
)
