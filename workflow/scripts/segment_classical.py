"""Snakemake script (rule segment_classical): classical baseline labels for every field of a well."""
import logging

from plateseg.classical import segment_classical
from plateseg.io import setup_logging
from plateseg.ngff import list_fields, open_field, write_well_labels

setup_logging(snakemake.log[0])
log = logging.getLogger("plateseg.segment_classical")
p = snakemake.params
image = snakemake.input.image
fields = list_fields(image)


def labelled_fields():
    for i, field in enumerate(fields, start=1):
        labels = segment_classical(open_field(image, field)[p.channel], **p.settings)
        log.info("field %d (%d/%d): %d nuclei", field, i, len(fields), labels.max())
        yield field, labels


write_well_labels(
    snakemake.output[0],
    labelled_fields(),
    tile_size=p.tile_size,
    pixel_size=p.pixel_size,
    attrs={"method": "classical", "settings": dict(p.settings)},
)
