"""Snakemake script (rule cross_validate_ensemble): classical baseline, U-Net, Mask R-CNN, ensemble and oracle on
the annotated images, every image scored by models (engines and picker) that did not train on it."""
import logging

import numpy as np
import pandas as pd

from plateseg.io.annotated import load_annotated
from plateseg.segment.classical import segment_classical
from plateseg.ensemble.picker import compare_methods, cross_validated_predictions
from plateseg.io.files import read_table, setup_logging, write_table

setup_logging(snakemake.log[0])
log = logging.getLogger("plateseg.cross_validate_ensemble")
p = snakemake.params
table = pd.concat([read_table(path) for path in snakemake.input.candidates], ignore_index=True)
table["predicted_iou"] = cross_validated_predictions(table, p.picker)
labels = {}
for path in snakemake.input.labels:
    with np.load(path) as npz:
        for key in npz.files:
            image_id, engine = key.rsplit("/", 1)
            labels.setdefault(image_id, {})[engine] = npz[key]
items, _ = load_annotated(p.annotations)
truths = {image_id: mask for image_id, _, mask in items if image_id in labels}
classical = {image_id: segment_classical(image[0], **p.classical) for image_id, image, _ in items if image_id in labels}
summary, per_image = compare_methods(table, labels, truths, {"classical": classical}, min_iou=p.min_iou, nms_iou=p.nms_iou)
for row in summary.itertuples():
    log.info("%s: DSB mAP %.3f, AP50 %.3f, F1@0.5 %.3f", row.method, row.mean_dsb_map, row.coco_AP50, row.pooled_f1_50)
write_table(summary, snakemake.output.summary)
write_table(table, snakemake.output.candidates)
