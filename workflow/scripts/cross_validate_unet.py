"""Snakemake script (rule cross_validate_unet): each fold model scored on the images it did not see."""
from plateseg.io.files import setup_logging
from plateseg.pipeline.validation import cross_validate_unet

setup_logging(snakemake.log[0])
p = snakemake.params
cross_validate_unet(snakemake.input.models, p.annotations, snakemake.output[0], p.watershed, p.tile_size, p.halo,
                    p.batch_size, threads=snakemake.threads)
