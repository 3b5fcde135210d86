"""Snakemake script (rule pick): ensemble labels of a well, the best candidate of both engines per nucleus."""
import logging

import numpy as np
import pandas as pd

from plateseg.ensemble.picker import Picker, ensemble_field
from plateseg.io.files import read_table, setup_logging, write_table
from plateseg.io.ngff import list_fields, open_field, read_labels, write_well_labels

setup_logging(snakemake.log[0])
log = logging.getLogger("plateseg.pick")
p = snakemake.params
picker = Picker.load(snakemake.input.picker)
detections = read_table(snakemake.input.maskrcnn_table)
fields = list_fields(snakemake.input.maps)
picks = []


def picked():
    for i, field in enumerate(fields, start=1):
        labels = {"unet": read_labels(snakemake.input.unet, field), "maskrcnn": read_labels(snakemake.input.maskrcnn, field)}
        rows = detections[detections["field"] == field]
        scores = {"maskrcnn": dict(zip(rows["label"].tolist(), rows["score"].tolist()))}
        maps = open_field(snakemake.input.maps, field)[...].astype(np.float32)
        out, table = ensemble_field(labels, picker, maps, scores, min_iou=p.min_iou, nms_iou=p.nms_iou)
        table.insert(0, "field", np.int64(field))
        picks.append(table)
        n_cand = int(labels["unet"].max()) + int(labels["maskrcnn"].max())
        log.info("field %d (%d/%d): %d of %d candidates kept (%d U-Net, %d Mask R-CNN)", field, i, len(fields), len(table),
                 n_cand, int((table["engine"] == "unet").sum()), int((table["engine"] == "maskrcnn").sum()))
        yield field, out


write_well_labels(snakemake.output.labels, picked(), tile_size=p.tile_size, pixel_size=p.pixel_size,
                  attrs={"method": "ensemble", "min_iou": p.min_iou, "nms_iou": p.nms_iou, "picker": snakemake.input.picker})
write_table(pd.concat(picks, ignore_index=True), snakemake.output.picks)
