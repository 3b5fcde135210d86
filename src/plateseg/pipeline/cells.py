"""What rule segment_cells does for one well: cells grown from the final nuclei and their cytoplasm."""
from __future__ import annotations

import logging

__all__ = ["cells_well"]

log = logging.getLogger(__name__)


def cells_well(image, nuclei, cells_out, cytoplasm_out, channel: int, settings: dict, tile_size: int = 256,
               pixel_size: float = 1.0) -> None:
    """Rule segment_cells: the cell and cytoplasm label stores of a well, field by field.

    Parameters
    ----------
    image : path-like
        The well image store.
    nuclei : path-like
        The final nucleus label store (each nucleus seeds the cell of the same label).
    cells_out, cytoplasm_out : path-like
        The label stores written (label names ``cells`` and ``cytoplasm``).
    channel : int
        Index of the cell stain in the image's channels.
    settings : dict
        Keyword arguments of :func:`plateseg.segment.cells.propagate_cells`.
    tile_size, pixel_size
        Chunk edge and micrometres per pixel of the stores.

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
    from plateseg.io.ngff import list_fields, open_field, read_labels, write_well_labels
    from plateseg.segment.cells import cytoplasm, propagate_cells

    fields = list_fields(image)
    attrs = {"method": "propagation", "settings": dict(settings)}

    def cells():
        for i, field in enumerate(fields, start=1):
            nuc = read_labels(nuclei, field)
            lab = propagate_cells(nuc, open_field(image, field)[channel], **settings)
            n_nuc = len(set(map(int, nuc[nuc > 0].ravel().tolist())))
            log.info("field %d (%d/%d): %d cells around %d nuclei, mean cell area %.0f px", field, i, len(fields),
                     int(len(set(lab[lab > 0].ravel().tolist()))), n_nuc, (lab > 0).sum() / max(n_nuc, 1))
            yield field, lab

    write_well_labels(cells_out, cells(), name="cells", tile_size=tile_size, pixel_size=pixel_size, attrs=attrs)
    write_well_labels(cytoplasm_out, ((f, cytoplasm(read_labels(cells_out, f), read_labels(nuclei, f))) for f in fields),
                      name="cytoplasm", tile_size=tile_size, pixel_size=pixel_size, attrs=attrs)
