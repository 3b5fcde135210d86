"""Snakemake script (rule folds): grouped k-fold split of the annotated training images."""
from plateseg.io.files import setup_logging
from plateseg.pipeline.folds import make_folds

setup_logging(snakemake.log[0])
p = snakemake.params
make_folds(p.annotations, snakemake.output[0], k=p.k, seed=p.seed, group_distance=p.group_distance)
