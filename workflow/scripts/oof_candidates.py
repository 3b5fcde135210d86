"""Snakemake script (rule oof_candidates): the fold-k models of both engines predict the annotated images of fold
k (which they did not train on); every candidate mask gets its features and its IoU with the truth."""
from plateseg.io.files import setup_logging
from plateseg.pipeline.candidates import oof_candidates

setup_logging(snakemake.log[0])
p, i = snakemake.params, snakemake.input
oof_candidates(snakemake.wildcards.fold, i.unet, i.maskrcnn, i.folds, p.annotations, snakemake.output.table,
               snakemake.output.labels, p.tile_size, p.halo, p.batch_size, p.watershed, p.detection,
               threads=snakemake.threads, checks=i.get("checks", []))
