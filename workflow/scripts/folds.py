"""Snakemake script (rule folds): grouped k-fold split of the annotated training images."""
import logging

from plateseg.io.annotated import grouped_folds, load_annotated
from plateseg.io.files import setup_logging, write_table

setup_logging(snakemake.log[0])
log = logging.getLogger("plateseg.folds")
p = snakemake.params
_, index = load_annotated(p.annotations)
try:
    folds = grouped_folds(index, k=p.k, seed=p.seed, distance=p.group_distance)
except ValueError as err:
    raise ValueError(f"config key training.folds: {err} (annotations {p.annotations})") from err
for fold, rows in folds.groupby("fold"):
    log.info("fold %d: %d images in %d groups", fold, len(rows), rows["group"].nunique())
write_table(folds, snakemake.output[0])
