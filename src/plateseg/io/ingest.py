"""Ingest: a well's raw TIFF files -> one OME-Zarr well image store.

Raw files are only read, never modified. Every field gets one (c, y, x) array whose channel
order is the configured one; all channels of a field must have the same 2-D shape.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import numpy as np
import tifffile

from plateseg.io.files import atomic_path
from plateseg.io.ngff import create_well_image

__all__ = ["read_plane", "ingest_well"]

log = logging.getLogger(__name__)


def read_plane(path) -> np.ndarray:
    """Read a single-plane 2-D image from a TIFF file; clear error for anything else."""
    path = Path(path)
    try:
        img = tifffile.imread(path)
    except Exception as err:  # tifffile raises several types for broken files
        raise ValueError(f"{path}: cannot read as TIFF ({err})") from err
    img = np.squeeze(img)
    if img.ndim != 2:
        raise ValueError(
            f"{path}: expected a single 2-D plane (y, x), got an array of shape {img.shape}; "
            "z-stacks, time series and RGB files must be split into one file per plane and channel"
        )
    return img


def ingest_well(files, channels: dict, out, tile_size: int, pixel_size: float, attrs: dict | None = None) -> dict:
    """Convert one well's TIFF files into a well image store at ``out``.

    Parameters
    ----------
    files : list of dict
        One entry per file with keys ``field``, ``channel`` (the channel id of the file name) and ``path``.
    channels : dict
        Channel id -> channel name, in the order of the ``c`` axis. Every field must have every channel.
    out : path-like
        The ``image.zarr`` folder to write (atomically).
    tile_size, pixel_size : chunk edge in pixels and micrometres per pixel.

    Returns
    -------
    dict
        field -> (height, width) of the written fields.
    """
    by_field: dict[int, dict[str, str]] = defaultdict(dict)
    for f in files:
        by_field[int(f["field"])][str(f["channel"])] = f["path"]
    ids = [str(c) for c in channels]
    for field, chans in sorted(by_field.items()):
        missing = [c for c in ids if c not in chans]
        if missing:
            raise ValueError(
                f"field {field} lacks channel(s) {missing} (files: {sorted(chans.values())}); "
                f"config key channels.names lists {ids}"
            )
    shapes, dtype = {}, None
    for field, chans in sorted(by_field.items()):
        # read one plane per channel lazily below; take shape/dtype from the TIFF headers first
        for c in ids:
            with tifffile.TiffFile(chans[c]) as tf:
                page = tf.pages[0]
                shape, dt = tuple(s for s in page.shape if s != 1), page.dtype
            if len(shape) != 2:
                raise ValueError(f"{chans[c]}: expected a 2-D plane, got shape {page.shape}")
            if field in shapes and shapes[field] != shape:
                raise ValueError(
                    f"{chans[c]}: shape {shape} differs from the other channels of field {field} {shapes[field]}"
                )
            shapes[field] = shape
            if dtype is not None and dt != dtype:
                raise ValueError(f"{chans[c]}: dtype {dt} differs from the other files of the well ({dtype})")
            dtype = dt
    with atomic_path(out) as tmp:
        root = create_well_image(tmp, shapes, list(channels.values()), dtype, tile_size, pixel_size, attrs)
        for i, (field, chans) in enumerate(sorted(by_field.items()), start=1):
            arr = root[f"{field}/0"]
            for ci, c in enumerate(ids):
                arr[ci] = read_plane(chans[c])
            log.info("field %d (%d/%d): %s x %d channels", field, i, len(by_field), shapes[field], len(ids))
    return shapes
