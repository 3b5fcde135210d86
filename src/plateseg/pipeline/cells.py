"""What rule segment_cells does for one well: cells grown from the final nuclei and their cytoplasm."""
from __future__ import annotations

import logging

__all__ = ["cells_well"]

log = logging.getLogger(__name__)


def cells_well(image, nuclei, cells_out, cytoplasm_out, channel: int, settings: dict, tile_size: int = 256,
               pixel_size: float = 1.0, block_size: int | None = None, halo: int = 64, threads: int = 1) -> None:
    """Rule segment_cells: the cell and cytoplasm label stores of a well, field by field.

    Parameters
    ----------
    image : path-like
        The well image store.
    nuclei : path-like
        The final nucleus label store (each nucleus seeds the cell of the same label).
    cells_out, cytoplasm_out : path-like
        The label stores written (label names ``cells`` and ``cytoplasm``), atomically.
    channel : int
        Index of the cell stain in the image's channels.
    settings : dict
        Keyword arguments of :func:`plateseg.segment.cells.propagate_cells`.
    tile_size, pixel_size
        Chunk edge and micrometres per pixel of the stores.
    block_size, halo : int, optional
        A field larger than ``block_size`` is grown block by block: the whole field's stain levels first
        (:func:`plateseg.segment.cells.field_levels`), then each block's pixels from its window with ``halo``
        plus ``max_distance`` of context (:func:`plateseg.tiling.grid.map_cores`), so that a cell is the same
        whichever block computes a pixel of it; None: every field whole.
    threads : int
        Blocks computed at once (the rule's threads; the cells do not depend on it).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> from plateseg.io.ngff import read_labels, write_well_image, write_well_labels
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> img = np.zeros((2, 32, 32), np.uint16); img[1, 4:28, 4:28] = 1000
    >>> nuc = np.zeros((32, 32), np.uint32); nuc[14:18, 14:18] = 5
    >>> write_well_image(d / "image.zarr", {1: img}, ["DNA", "Cyto"], 16, 1.0)
    >>> write_well_labels(d / "nuclei.zarr", {1: nuc}, tile_size=16)
    >>> cells_well(d / "image.zarr", d / "nuclei.zarr", d / "cells.zarr", d / "cytoplasm.zarr", 1, {"sigma": 0}, 16)
    >>> int((read_labels(d / "cells.zarr", 1) == 5).sum()), int((read_labels(d / "cytoplasm.zarr", 1) == 5).sum())
    (576, 560)
    """
    import math
    import time

    import numpy as np

    from plateseg.io.files import atomic_path, rate_text
    from plateseg.io.ngff import create_well_labels, field_shapes, list_fields, open_field, open_labels
    from plateseg.segment.cells import cytoplasm, field_levels, propagate_cells
    from plateseg.tiling.grid import map_cores

    fields = list_fields(image)
    shapes = field_shapes(image)
    attrs = {"method": "propagation", "settings": dict(settings)}
    store = dict(tile_size=tile_size, pixel_size=pixel_size, attrs=attrs)
    with atomic_path(cells_out) as tmp_cells, atomic_path(cytoplasm_out) as tmp_cyto:
        cells_arr = create_well_labels(tmp_cells, shapes, name="cells", **store)
        cyto_arr = create_well_labels(tmp_cyto, shapes, name="cytoplasm", **store)
        for i, field in enumerate(fields, start=1):
            stain, nuc = open_field(image, field), open_labels(nuclei, field)
            h, w = shapes[field]
            blockwise = block_size is not None and max(h, w) > int(block_size)
            step = int(block_size) if blockwise else max(h, w)
            t0 = time.perf_counter()
            if blockwise:
                kw = {k: settings[k] for k in ("sigma", "threshold", "elevation", "ridge_sigma") if k in settings}
                levels = field_levels(lambda s: stain[(channel,) + tuple(s)], (h, w), **kw, block_size=step, halo=halo,
                                      threads=threads)
                reach = int(halo) + math.ceil(float(settings.get("max_distance", 50.0)))
                map_cores(lambda win, origin: propagate_cells(win[0], win[1], levels=levels, **settings),
                          lambda s: (nuc[tuple(s)], stain[(channel,) + tuple(s)]), (h, w), step, reach,
                          out=cells_arr[field], threads=threads)
            else:
                cells_arr[field][...] = propagate_cells(nuc[...], stain[channel], **settings)
            # cytoplasm = cell minus nucleus, pixel by pixel: block cores without context
            map_cores(lambda win, origin: cytoplasm(*win), lambda s: (cells_arr[field][tuple(s)], nuc[tuple(s)]),
                      (h, w), step, 0, out=cyto_arr[field], threads=threads)
            cell_ids, nucleus_ids, area = set(), set(), 0
            for ys in range(0, h, step):  # counted strip by strip, for the log
                strip = cells_arr[field][ys:ys + step]
                cell_ids.update(np.unique(strip).tolist())
                nucleus_ids.update(np.unique(nuc[ys:ys + step]).tolist())
                area += int((strip > 0).sum())
            n_cells, n_nuc = len(cell_ids - {0}), len(nucleus_ids - {0})
            log.info("field %d (%d/%d): %d cells around %d nuclei, mean cell area %.0f px%s, %s", field, i, len(fields),
                     n_cells, n_nuc, area / max(n_nuc, 1), f" ({-(-h // step) * -(-w // step)} blocks)" if blockwise else "",
                     rate_text(h * w, time.perf_counter() - t0))
