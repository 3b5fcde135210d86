"""What rule pick does for one well: the ensemble labels, the best candidate of both engines per nucleus."""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from plateseg.io.files import read_table, write_table

__all__ = ["pick_well"]

log = logging.getLogger(__name__)


def pick_well(maps, unet, maskrcnn, maskrcnn_table, picker, labels_out, picks_out, min_iou: float = 0.3,
              nms_iou: float = 0.3, tile_size: int = 256, pixel_size: float = 1.0):
    """Rule pick: ensemble labels of a well, the best candidate of both engines per nucleus.

    Parameters
    ----------
    maps : path-like
        The well's U-Net maps (:func:`plateseg.pipeline.infer.infer_well_maps`); the zoom of each field
        before inference (attrs ``scale``) puts the candidates' size features in the model's pixels.
    unet, maskrcnn : path-like
        The well's U-Net watershed and Mask R-CNN label stores.
    maskrcnn_table : path-like
        The Mask R-CNN instance table (detection scores).
    picker : path-like
        The picker file.
    labels_out, picks_out : path-like
        Outputs: the ensemble label store and the picks table (``field`` and the columns of
        :func:`plateseg.ensemble.pick.pick`).
    min_iou, nms_iou : float
        As :func:`plateseg.ensemble.pick.pick`.
    tile_size : int
    pixel_size : float
        Chunk edge and micrometres per pixel of the label store.

    Returns
    -------
    pandas.DataFrame
        The picks table.

    Examples
    --------
    well = "results/P/A01/"
    pick_well(well + "unet.zarr", well + "unet_labels.zarr", well + "maskrcnn.zarr", well + "maskrcnn.parquet",
                  "picker.json", well + "ensemble.zarr", well + "picks.parquet")
    """
    from plateseg.ensemble.pick import ensemble_field
    from plateseg.engines.scale import stored_scales
    from plateseg.ensemble.picker import Picker
    from plateseg.io.ngff import list_fields, open_field, read_labels, write_well_labels

    model = Picker.load(picker)
    detections = read_table(maskrcnn_table)
    fields = list_fields(maps)
    scales = stored_scales(maps)
    picks = []

    def picked():
        for i, field in enumerate(fields, start=1):
            labels = {"unet": read_labels(unet, field), "maskrcnn": read_labels(maskrcnn, field)}
            rows = detections[detections["field"] == field]
            scores = {"maskrcnn": dict(zip(rows["label"].tolist(), rows["score"].tolist()))}
            field_maps = open_field(maps, field)[...].astype(np.float32)
            out, table = ensemble_field(labels, model, field_maps, scores, min_iou=min_iou, nms_iou=nms_iou,
                                        scale=float(scales.get(str(field), 1.0)))
            table.insert(0, "field", np.int64(field))
            picks.append(table)
            n_cand = int(labels["unet"].max()) + int(labels["maskrcnn"].max())
            log.info("field %d (%d/%d): %d of %d candidates kept (%d U-Net, %d Mask R-CNN)", field, i, len(fields),
                     len(table), n_cand, int((table["engine"] == "unet").sum()), int((table["engine"] == "maskrcnn").sum()))
            yield field, out

    write_well_labels(labels_out, picked(), tile_size=tile_size, pixel_size=pixel_size,
                      attrs={"method": "ensemble", "min_iou": min_iou, "nms_iou": nms_iou, "picker": str(picker)})
    table = pd.concat(picks, ignore_index=True)
    write_table(table, picks_out)
    return table
