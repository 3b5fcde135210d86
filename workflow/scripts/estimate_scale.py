"""Snakemake script (rule estimate_scale): per field of a well the nucleus diameter and the zoom to the model's
scale (segmentation.rescale), as scale.json for both engines' inference."""
from plateseg.io.files import setup_logging
from plateseg.pipeline.scale import estimate_well_scale

setup_logging(snakemake.log[0])
p = snakemake.params
estimate_well_scale(snakemake.input.image, snakemake.output[0], p.rescale, checkpoint=snakemake.input.get("model"),
                    engine=p.engine, channel=p.channel,
                    tile_size=p.tile_size, halo=p.halo, batch_size=p.batch_size, pixel_size=p.pixel_size,
                    threads=snakemake.threads)
