"""Resumable U-Net inference of a well: the per-pixel maps of every field, tile by tile, into zarr.

The maps store has the layout of a well image store (:mod:`plateseg.ngff`), with the U-Net heads
as channels::

    unet.zarr/                  well group, attrs "plateseg": model, settings, fingerprint
    unet.zarr/<field>/0         (3, y, x) probabilities (foreground, boundary, centre), chunk = tile

so :func:`plateseg.ngff.list_fields`, :func:`~plateseg.ngff.open_field` and
:func:`~plateseg.ngff.channel_names` read it.

Crash safety and resume: the maps are written into a partial store beside the output
(``<out>.partial``), and a progress record (``<out>.partial/progress.json``: the next tile of
every field) is replaced atomically after each tile is written. Only when every field is complete
is the partial store moved to ``out``, so a killed job never leaves anything at ``out``. Run
again, the job resumes every field at its first unwritten tile -- if the partial store was made
from the same checkpoint, image and settings (its *fingerprint*); otherwise it is discarded and
inference starts over.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Callable

import numpy as np
import zarr

from .io import atomic_path, remove_path
from .ngff import channel_names, create_well_image, list_fields, open_field
from .tiling import tile_grid

__all__ = ["partial_path", "maps_fingerprint", "read_progress", "infer_well_maps"]

LOG = logging.getLogger("plateseg.inference")
PROGRESS = "progress.json"


def partial_path(out) -> Path:
    """The partial store of output ``out``: ``<out>.partial`` beside it.

    Examples
    --------
    >>> partial_path("results/P/A01/unet.zarr").as_posix()
    'results/P/A01/unet.zarr.partial'
    """
    out = Path(out)
    return out.with_name(out.name + ".partial")


def _file_sha256(path, length: int = 16) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]


def maps_fingerprint(checkpoint, image, settings: dict) -> str:
    """What the maps of a well depend on: checkpoint bytes, the image store and the settings.

    Parameters
    ----------
    checkpoint : path-like
        The model file (its content is hashed).
    image : path-like
        The well image store; its fields, shapes, chunks and root metadata (with the source
        files and the time it was written) are hashed, not the pixels.
    settings : dict
        JSON-serialisable inference settings that change the maps (channels, tiling, dtype).

    Returns
    -------
    str
        16 hex digits.
    """
    image = Path(image)
    root = zarr.open_group(str(image), mode="r")
    fields = list_fields(image)
    desc = {
        "checkpoint": _file_sha256(checkpoint),
        "image_attrs": dict(root.attrs),
        "image_written_ns": (image / "zarr.json").stat().st_mtime_ns,
        "fields": [[f, list(open_field(image, f).shape), list(open_field(image, f).chunks)] for f in fields],
        "settings": settings,
    }
    blob = json.dumps(desc, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def read_progress(partial) -> dict | None:
    """The progress record of a partial store (``fingerprint``, ``next_tile`` per field), or None."""
    path = Path(partial) / PROGRESS
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_progress(partial: Path, record: dict) -> None:
    with atomic_path(partial / PROGRESS) as tmp:
        tmp.write_text(json.dumps(record, sort_keys=True))


def infer_well_maps(image, checkpoint, out, channels=None, tile_size: int | None = None,
                    halo: int = 32, batch_size: int = 4, device=None, dtype="float16",
                    pixel_size: float = 1.0, attrs: dict | None = None,
                    on_tile_written: Callable | None = None, log: logging.Logger | None = None) -> Path:
    """Predict the U-Net maps of every field of a well image store into ``out``, resumably.

    Parameters
    ----------
    image : path-like
        Well image store (:func:`plateseg.ngff.create_well_image` layout).
    checkpoint : path-like
        U-Net checkpoint (:func:`plateseg.unet.save_checkpoint`).
    out : path-like
        Output maps store (see the module docstring); written only when complete.
    channels : sequence of int, optional
        Image channels fed to the model, default the checkpoint's ``channels``.
    tile_size : int, optional
        Tile core edge; default the image's chunk edge. Also the chunk edge of the maps.
    halo : int
        Context read around each tile.
    batch_size : int
        Tiles per forward pass.
    device : str, optional
        ``"auto"``/None (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:1"``.
    dtype : str
        Storage type of the maps (``"float16"`` halves the size; probabilities need no more).
    pixel_size : float
        Micrometres per pixel, for the NGFF metadata.
    attrs : dict, optional
        Extra metadata stored under ``"plateseg"``.
    on_tile_written : callable, optional
        ``on_tile_written(field, tile)`` after a tile's maps and the progress record are written.
    log : logging.Logger, optional
        Receives one line per tile (default the ``plateseg.inference`` logger).

    Returns
    -------
    pathlib.Path
        ``out``.
    """
    from .unet import load_checkpoint, predict_maps

    log = log or LOG
    image, out = Path(image), Path(out)
    partial = partial_path(out)
    fields = list_fields(image)
    arrays = {f: open_field(image, f) for f in fields}
    if tile_size is None:
        tile_size = int(arrays[fields[0]].chunks[-1])
    model, meta = load_checkpoint(checkpoint, device)
    chans = [int(c) for c in (meta["channels"] if channels is None else channels)]
    settings = {"channels": chans, "tile_size": int(tile_size), "halo": int(halo), "dtype": str(dtype)}
    fingerprint = maps_fingerprint(checkpoint, image, settings)

    record = read_progress(partial)
    if record is not None and record.get("fingerprint") == fingerprint:
        log.info("resuming the partial maps in %s", partial)
    else:
        if partial.exists():
            log.info("discarding %s: made from another model, image or settings", partial)
            remove_path(partial)
        record = None
    if record is None:
        create_well_image(
            partial, {f: tuple(arrays[f].shape[-2:]) for f in fields}, list(meta["heads"]), np.dtype(dtype),
            int(tile_size), pixel_size,
            attrs={**(attrs or {}), "model": {k: meta.get(k) for k in ("arch", "heads", "channels",
                                                                     "normalization", "data_hash",
                                                                     "code_version", "pixel_size")},
                   "checkpoint": str(checkpoint), "settings": settings, "fingerprint": fingerprint},
        )
        record = {"fingerprint": fingerprint, "next_tile": {str(f): 0 for f in fields}}
        _write_progress(partial, record)
    root = zarr.open_group(str(partial), mode="r+")
    device_name = str(next(model.parameters()).device)

    for i, f in enumerate(fields, start=1):
        n_tiles = len(tile_grid(arrays[f].shape, tile_size, halo))
        start = int(record["next_tile"].get(str(f), 0))
        if start >= n_tiles:
            log.info("field %d (%d/%d): complete", f, i, len(fields))
            continue
        log.info("field %d (%d/%d): %d tiles on %s%s", f, i, len(fields), n_tiles, device_name,
                 f", resuming at tile {start}" if start else "")

        def written(tile, f=f, i=i, n_tiles=n_tiles):
            record["next_tile"][str(f)] = tile.number + 1
            _write_progress(partial, record)
            log.info("field %d (%d/%d): tile %d/%d written", f, i, len(fields), tile.number + 1, n_tiles)
            if on_tile_written is not None:
                on_tile_written(f, tile)

        predict_maps(model, meta, arrays[f], tile_size, halo, batch_size, out=root[f"{f}/0"], start=start,
                     on_tile_written=written, channels=chans)

    (partial / PROGRESS).unlink()
    remove_path(out)
    os.replace(partial, out)
    log.info("maps of %d field(s) written to %s (%s)", len(fields), out, ", ".join(channel_names(out)))
    return out
