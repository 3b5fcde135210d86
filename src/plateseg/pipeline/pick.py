"""What rule pick does for one well: the ensemble labels, the best candidate of both engines per nucleus."""
from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from plateseg.io.files import rate_text, read_table, write_table

__all__ = ["pick_well"]

log = logging.getLogger(__name__)


def pick_well(maps, unet, maskrcnn, maskrcnn_table, picker, labels_out, picks_out, min_iou: float = 0.3,
              nms_iou: float = 0.3, tile_size: int = 256, pixel_size: float = 1.0, block_size: int | None = None,
              halo: int = 64, threads: int = 1):
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
        :func:`plateseg.ensemble.pick.pick`). The label store records per field its blocks, nuclei kept whole
        across a block seam and nuclei larger than the halo (``plateseg.blocks``,
        :func:`plateseg.io.ngff.record_blocks`), as the other blockwise label stores do.
    min_iou, nms_iou : float
        As :func:`plateseg.ensemble.pick.pick`.
    tile_size : int
    pixel_size : float
        Chunk edge and micrometres per pixel of the label store.
    block_size, halo : int, optional
        A field larger than ``block_size`` is picked block by block with ``halo`` of context: candidates'
        field-level features from the whole field (:func:`plateseg.ensemble.features.field_statistics`), each
        kept nucleus owned by the block whose core holds its centroid; None: every field whole.
    threads : int
        Blocks picked at once (the rule's threads; labels and picks do not depend on it).

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
    from plateseg.engines.scale import stored_scales
    from plateseg.ensemble.pick import ensemble_field
    from plateseg.ensemble.picker import Picker
    from plateseg.io.files import atomic_path
    from plateseg.io.ngff import create_well_labels, field_shapes, list_fields, open_field, open_labels, record_blocks
    from plateseg.tiling.instances import seam_counts, seam_note

    model = Picker.load(picker)
    detections = read_table(maskrcnn_table)
    fields = list_fields(maps)
    scales = stored_scales(maps)
    shapes = field_shapes(maps)
    attrs = {"method": "ensemble", "min_iou": min_iou, "nms_iou": nms_iou, "picker": str(picker)}
    picks, blocks = [], {}
    with atomic_path(labels_out) as tmp:
        targets = create_well_labels(tmp, shapes, tile_size=tile_size, pixel_size=pixel_size, attrs=attrs)
        for i, field in enumerate(fields, start=1):
            engines = {"unet": open_labels(unet, field), "maskrcnn": open_labels(maskrcnn, field)}
            field_maps = open_field(maps, field)
            rows = detections[detections["field"] == field]
            kw = dict(scores={"maskrcnn": dict(zip(rows["label"].tolist(), rows["score"].tolist()))}, min_iou=min_iou,
                      nms_iou=nms_iou, scale=float(scales.get(str(field), 1.0)))
            t0 = time.perf_counter()
            if block_size is None or max(shapes[field]) <= int(block_size):
                out, table = ensemble_field({k: v[...] for k, v in engines.items()}, model,
                                            field_maps[...].astype(np.float32), **kw)
                targets[field][...] = out
                counts = seam_counts(None, shapes[field], block_size, halo)
            else:
                table, owned = _pick_blocks(engines, field_maps, model, targets[field], int(block_size), int(halo), kw,
                                            threads)
                counts = seam_counts(owned, shapes[field], int(block_size), int(halo))
            blocks[field] = {"objects": len(table), **counts}
            table.insert(0, "field", np.int64(field))
            picks.append(table)
            log.info("field %d (%d/%d): %d candidates kept (%d U-Net, %d Mask R-CNN), %s%s", field, i, len(fields),
                     len(table), int((table["engine"] == "unet").sum()), int((table["engine"] == "maskrcnn").sum()),
                     rate_text(int(np.prod(shapes[field])), time.perf_counter() - t0),
                     seam_note(field, counts, block_size, halo, log))
        record_blocks(tmp, blocks)
    table = pd.concat(picks, ignore_index=True)
    write_table(table, picks_out)
    return table


def _pick_blocks(engines: dict, field_maps, model, target, block_size: int, halo: int, kw: dict,
                 threads: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ensemble of one large field block by block, ``threads`` blocks at a time (each kept nucleus owned by the
    block holding its centroid, the field-level features from the whole field); writes ``target`` and returns the
    picks table and the :func:`plateseg.tiling.instances.tiled_labels` table of the kept nuclei (for their seam
    counts)."""
    from plateseg.ensemble.features import field_statistics
    from plateseg.ensemble.pick import ensemble_field
    from plateseg.tiling.grid import tile_grid
    from plateseg.tiling.instances import tiled_labels

    stats = field_statistics(engines, block_size, threads)
    by_origin = {}  # window origin -> its picks; each block's thread sets its own key

    def read(index):
        return np.concatenate([np.stack([np.asarray(engines["unet"][index]), np.asarray(engines["maskrcnn"][index])]),
                               np.asarray(field_maps[(slice(None),) + tuple(index)], np.float64)]).astype(np.float64)

    def label(window, origin):
        labels = {"unet": window[0].astype(np.int64), "maskrcnn": window[1].astype(np.int64)}
        out, by_origin[origin] = ensemble_field(labels, model, window[2:5].astype(np.float32), field_stats=stats, **kw)
        return out

    _, owned = tiled_labels(label, read, target.shape, block_size, halo, out=target, threads=threads, log=log)
    origin_of = {t.number: (t.read[0].start, t.read[1].start) for t in tile_grid(target.shape, block_size, halo)}
    rows = [by_origin[origin_of[int(o.tile)]].set_index("label").loc[int(o.window_label)] for o in owned.itertuples()]
    table = pd.DataFrame(rows).reset_index(drop=True)
    table.insert(0, "label", owned["label"].to_numpy(np.int64))
    table["area"] = owned["area"].to_numpy(np.int64)
    return table, owned
