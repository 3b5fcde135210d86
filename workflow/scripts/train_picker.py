"""Snakemake script (rule train_picker): the LightGBM picker on the out-of-fold candidates of every fold."""
import logging

import pandas as pd

from plateseg.ensemble.picker import train_picker
from plateseg.io.files import read_table, setup_logging, write_table
from plateseg.measure.qc import importance_figure

setup_logging(snakemake.log[0])
log = logging.getLogger("plateseg.train_picker")
table = pd.concat([read_table(path) for path in snakemake.input.candidates], ignore_index=True)
log.info("%d candidates of %d images (%s)", len(table), table["image"].nunique(), table["engine"].value_counts().to_dict())
picker = train_picker(table, params=snakemake.params.picker, log=log)
picker.meta.update(folds=sorted(int(f) for f in table["fold"].unique()), n_images=int(table["image"].nunique()))
picker.save(snakemake.output.picker)
importances = picker.importances()
write_table(importances, snakemake.output.importances)
importance_figure(importances, snakemake.output.figure)
log.info("picker written to %s; top features: %s", snakemake.output.picker, ", ".join(importances["feature"].head(5)))
