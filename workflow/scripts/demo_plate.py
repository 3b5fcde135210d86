"""Snakemake script (rule demo_plate): the synthetic demo plate (images, ground truth, truth table written last)."""
from plateseg.config.demo import write_demo
from plateseg.io.files import setup_logging

setup_logging(snakemake.log[0])
write_demo(dict(snakemake.params.demo))
