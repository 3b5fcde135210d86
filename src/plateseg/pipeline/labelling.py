"""Labelling every field of a well store into a label store: whole, or block by block for fields larger than a
block (whole slides), each object kept by the block that holds its centroid. Used by rules watershed and
segment_classical (:mod:`plateseg.pipeline.watershed`, :mod:`plateseg.pipeline.classical`)."""
from __future__ import annotations

import logging
import time

import numpy as np

from plateseg.io.files import atomic_path, rate_text
from plateseg.io.ngff import create_well_labels, field_shapes, list_fields, open_field, record_blocks
from plateseg.tiling.instances import seam_counts, seam_note, tiled_labels

__all__ = ["segment_well"]

log = logging.getLogger(__name__)


def segment_well(source, out, segmenter, tile_size: int, pixel_size: float, attrs=None, describe=None,
                 block_size: int | None = None, halo: int = 64, threads: int = 1) -> dict:
    """Label every field of the well store ``source`` and write the label store ``out`` (atomically).

    ``segmenter(field_array, field, blockwise)`` receives the lazy ``(c, y, x)`` array of a field, its
    number and whether it is labelled block by block, and returns ``label(window, origin) -> (h, w)
    labels`` for a ``(c, h, w)`` window whose top-left pixel is ``origin`` in the field. A field no
    larger than ``block_size`` on either side (or any field, with ``block_size`` None) is one window, in
    memory; a larger one is labelled block by block with ``halo`` of context, each object kept by the
    block whose core holds its centroid (:func:`plateseg.tiling.instances.tiled_labels`), written
    straight into the store, ``threads`` blocks at a time (the rule's threads; ``label`` is then called
    from several threads at once), so that only ``threads + 1`` block windows and their neighbours'
    objects are in memory; the labels do not depend on ``threads``.
    Fields are logged with their nucleus count (``describe`` adds a note).

    Returns
    -------
    dict
        field -> ``{"objects", "blocks", "on_seams", "cut_by_halo"}``: objects found, blocks, objects
        crossing a block seam (kept whole by their owner) and objects touching their window's outer
        edge (larger than the halo allows; they may be cut) -- also in the store's attrs
        (``plateseg.blocks``, :func:`plateseg.io.ngff.block_record`; the per-well QC columns
        ``Metadata_QC_Blocks``, ``Metadata_QC_NucleiAcrossSeams``, ``Metadata_QC_NucleiLargerThanHalo``) and logged.
    """
    fields = list_fields(source)
    shapes = field_shapes(source)
    stats = {}
    with atomic_path(out) as tmp:
        targets = create_well_labels(tmp, shapes, tile_size=tile_size, pixel_size=pixel_size, attrs=attrs)
        for i, field in enumerate(fields, start=1):
            arr = open_field(source, field)
            h, w = shapes[field]
            blockwise = block_size is not None and max(h, w) > int(block_size)
            t0 = time.perf_counter()
            label = segmenter(arr, field, blockwise)
            target = targets[field]
            if blockwise:
                _, table = tiled_labels(label, lambda sl: arr[(slice(None),) + tuple(sl)], (h, w), int(block_size),
                                        int(halo), out=target, threads=threads, log=log)
                stats[field] = {"objects": len(table), **seam_counts(table, (h, w), int(block_size), int(halo))}
            else:
                labels = np.asarray(label(arr[...], (0, 0)))
                target[...] = labels.astype(np.uint32, copy=False)
                stats[field] = {"objects": int(len(np.unique(labels)) - (labels.min() == 0)),
                                **seam_counts(None, (h, w), block_size, halo)}
            st = stats[field]
            log.info("field %d (%d/%d): %d nuclei%s, %s%s", field, i, len(fields), st["objects"],
                     f" ({describe})" if describe else "", rate_text(h * w, time.perf_counter() - t0),
                     seam_note(field, st, block_size, halo, log))
        record_blocks(tmp, stats)
    return stats

