"""Resumable inference of a well, tile by tile, into zarr: U-Net maps and Mask R-CNN instances.

:func:`infer_well_maps` writes the U-Net's per-pixel maps; :func:`infer_well_instances` writes the
Mask R-CNN's instance labels (an NGFF label store) and their table. Both resume a killed job as
described below. :func:`infer_well` is the one entry point of rules infer_unet and
infer_maskrcnn (the engine by name).

The maps store has the layout of a well image store (:mod:`plateseg.io.ngff`), with the U-Net heads
as channels::

    unet.zarr/                  well group, attrs "plateseg": model, settings, fingerprint
    unet.zarr/<field>/0         (3, y, x) probabilities (foreground, boundary, centre), chunk = tile

so :func:`plateseg.io.ngff.list_fields`, :func:`~plateseg.io.ngff.open_field` and
:func:`~plateseg.io.ngff.channel_names` read it.

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
import time
from pathlib import Path
from typing import Callable

import numpy as np
import zarr

from plateseg.io.files import atomic_path, rate_text, remove_path
from plateseg.io.ngff import channel_names, create_well_image, list_fields, open_field
from plateseg.engines.scale import field_tiling
from plateseg.tiling.grid import tile_grid

__all__ = ["partial_path", "maps_fingerprint", "read_progress", "infer_well_maps", "infer_well_instances", "infer_well"]

log = logging.getLogger(__name__)
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


def _open_well(image, out, checkpoint, load_checkpoint, device, channels, tile_size):
    """What both engines' well inference starts from: paths, the fields (lazy arrays), the tile size
    (default the image chunk), the model and its metadata, and the channels fed to it."""
    image, out = Path(image), Path(out)
    fields = list_fields(image)
    arrays = {f: open_field(image, f) for f in fields}
    if tile_size is None:
        tile_size = int(arrays[fields[0]].chunks[-1])
    model, meta = load_checkpoint(checkpoint, device)
    log.info("model %s%s", checkpoint, f" (set {meta['model_set']})" if meta.get("model_set") else "")
    chans = [int(c) for c in (meta["channels"] if channels is None else channels)]
    return image, out, partial_path(out), fields, arrays, tile_size, model, meta, chans


def _field_scales(scales, fields) -> dict:
    """``{str(field): zoom}`` for every field (1.0 where ``scales`` names none)."""
    scales = {int(k): float(v) for k, v in (scales or {}).items()}
    return {str(f): scales.get(int(f), 1.0) for f in fields}


def _zoom_note(log, field, factor, tile_size, halo):
    """Log that a field is zoomed to the model's scale, and the windows it is read in."""
    if factor != 1.0:
        tiles, context = field_tiling(tile_size, halo, factor)
        log.info("field %d: zoomed by %.3f to the model's scale, window by window (tiles of %s px and a halo of %d "
                 "px of the field, zoomed to the model's %s + %d)", field, factor, tiles, context, tile_size, halo)


def _open_partial(partial: Path, fingerprint: str, fields, create: Callable, log) -> dict:
    """The progress record of ``partial``: resumed if made with ``fingerprint``, else a new store.

    ``create(partial)`` makes an empty partial store; the record starts every field at tile 0.
    """
    record = read_progress(partial)
    if record is not None and record.get("fingerprint") == fingerprint:
        log.info("resuming the partial store %s", partial)
        return record
    if partial.exists():
        log.info("discarding %s: made from another model, image or settings", partial)
        remove_path(partial)
    create(partial)
    record = {"fingerprint": fingerprint, "next_tile": {str(f): 0 for f in fields}}
    _write_progress(partial, record)
    return record


def _tile_loop(fields, arrays, tile_size, halo, scales, record, partial, predict_field, model, on_tile_written,
               log):
    """Run ``predict_field(field, array, start, written)`` on every field from its first unwritten tile (tiles of
    the field's pixels: :func:`plateseg.engines.scale.field_tiling` at the field's zoom in ``scales``).

    ``written(tile, rows=None)`` (the engines' ``on_tile_written``) saves ``before_progress`` work,
    then the progress record, logs the tile and calls the user's ``on_tile_written(field, tile)``.
    """
    device_name = str(next(model.parameters()).device)
    for i, f in enumerate(fields, start=1):
        n_tiles = len(tile_grid(arrays[f].shape, *field_tiling(tile_size, halo, scales[str(f)])))
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

        t0 = time.perf_counter()
        predict_field(f, arrays[f], start, written)
        pixels = int(np.prod(arrays[f].shape[-2:])) * (n_tiles - start) // n_tiles
        log.info("field %d (%d/%d): %s", f, i, len(fields), rate_text(pixels, time.perf_counter() - t0))


def infer_well_maps(image, checkpoint, out, channels=None, tile_size: int | None = None,
                    halo: int = 32, batch_size: int = 4, device=None, dtype="float16",
                    pixel_size: float = 1.0, attrs: dict | None = None, scales: dict | None = None,
                    on_tile_written: Callable | None = None, log: logging.Logger | None = None) -> Path:
    """Predict the U-Net maps of every field of a well image store into ``out``, resumably.

    Parameters
    ----------
    image : path-like
        Well image store (:func:`plateseg.io.ngff.create_well_image` layout).
    checkpoint : path-like
        U-Net checkpoint (:func:`plateseg.engines.unet.save_checkpoint`).
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
    scales : dict, optional
        Field -> zoom (:func:`plateseg.engines.scale.read_scales`): a field with a zoom other than 1 is
        read in windows of the model's tile and halo in field pixels, each window zoomed to the model's scale and
        its maps resized back (:func:`plateseg.engines.unet.predict_maps` ``zoom``; resumable per tile, never a
        zoomed copy of the whole field); the zooms are stored in the attrs (``scale``) for the steps after
        inference.
    on_tile_written : callable, optional
        ``on_tile_written(field, tile)`` after a tile's maps and the progress record are written.
    log : logging.Logger, optional
        Receives one line per tile (default the ``plateseg.pipeline.infer`` logger).

    Returns
    -------
    pathlib.Path
        ``out``.
    """
    from plateseg.engines.unet import load_checkpoint, predict_maps

    log = log or logging.getLogger(__name__)
    image, out, partial, fields, arrays, tile_size, model, meta, chans = _open_well(
        image, out, checkpoint, load_checkpoint, device, channels, tile_size)
    scales = _field_scales(scales, fields)
    settings = {"channels": chans, "tile_size": int(tile_size), "halo": int(halo), "dtype": str(dtype),
                "scale": scales, "zoom": "window"}  # zoomed per window (a partial store zoomed whole is not resumed)
    fingerprint = maps_fingerprint(checkpoint, image, settings)

    def create(path):
        create_well_image(
            path, {f: tuple(arrays[f].shape[-2:]) for f in fields}, list(meta["heads"]), np.dtype(dtype),
            int(tile_size), pixel_size,
            attrs={**(attrs or {}), "model": {k: meta.get(k) for k in ("arch", "heads", "channels",
                                                                     "normalization", "data_hash",
                                                                     "code_version", "pixel_size")},
                   "checkpoint": str(checkpoint), "settings": settings, "fingerprint": fingerprint,
                   "scale": scales},
        )

    record = _open_partial(partial, fingerprint, fields, create, log)
    root = zarr.open_group(str(partial), mode="r+")

    def predict_field(f, arr, start, written):
        _zoom_note(log, f, scales[str(f)], tile_size, halo)
        predict_maps(model, meta, arr, tile_size, halo, batch_size, out=root[f"{f}/0"], start=start,
                     on_tile_written=written, channels=chans, zoom=scales[str(f)])

    _tile_loop(fields, arrays, tile_size, halo, scales, record, partial, predict_field, model, on_tile_written, log)
    (partial / PROGRESS).unlink()
    remove_path(out)
    os.replace(partial, out)
    log.info("maps of %d field(s) written to %s (%s)", len(fields), out, ", ".join(channel_names(out)))
    return out


def infer_well_instances(image, checkpoint, out, table_out, channels=None, tile_size: int | None = None,
                         halo: int = 32, batch_size: int = 2, device=None, score_threshold: float = 0.5,
                         mask_threshold: float = 0.5, min_area: int = 1, pixel_size: float = 1.0,
                         attrs: dict | None = None, scales: dict | None = None,
                         on_tile_written: Callable | None = None, log: logging.Logger | None = None) -> Path:
    """Mask R-CNN instances of every field of a well: a label store ``out`` and a table ``table_out``.

    Tiles with a halo, centroid ownership and nearest-centroid overlap resolution as
    :func:`plateseg.engines.maskrcnn.predict_instances`; resumable as :func:`infer_well_maps`: labels
    (with the deterministic ids ``tile * id_stride + k``) go into ``<out>.partial`` tile by tile,
    and the rows of each tile's instances into ``<out>.partial/rows/<field>_<tile>.parquet``
    before the progress record moves on. When every field is complete, each field's instances
    are numbered 1..N (tile order, then decreasing score; instances that lost every pixel to
    overlap resolution are dropped) into a new store written atomically at ``out``, with each field's seam QC
    (its tiles are the blocks: :func:`plateseg.io.ngff.record_blocks`), the table is written atomically at
    ``table_out``, and the partial store is removed.

    Parameters
    ----------
    image : path-like
        Well image store.
    checkpoint : path-like
        Mask R-CNN checkpoint (:func:`plateseg.engines.maskrcnn.save_checkpoint`).
    out : path-like
        Output label store (:mod:`plateseg.io.ngff` label layout, uint32, chunk = tile).
    table_out : path-like
        Output table (parquet or csv): ``field`` and
        :data:`plateseg.engines.maskrcnn.TABLE_COLUMNS` (``label`` as in ``out``, ``score``, mask box,
        centroid, area before overlap resolution, ``tile``, ``cut_by_halo``).
    channels, tile_size, halo, batch_size, device, pixel_size, attrs, scales, on_tile_written, log
        As :func:`infer_well_maps`; a zoomed field is read window by window, each window's masks resized back
        by nearest neighbour (:func:`plateseg.engines.maskrcnn.predict_instances` ``zoom``), so labels and table
        are in field pixels.
    score_threshold, mask_threshold, min_area
        As :func:`plateseg.engines.maskrcnn.predict_instances` (``min_area`` in the model's pixels).

    Returns
    -------
    pathlib.Path
        ``out``, the label store (the table is at ``table_out``).
    """
    import pandas as pd

    from plateseg.io.files import write_table
    from plateseg.engines.maskrcnn import default_id_stride, load_checkpoint, predict_instances
    from plateseg.labels import relabel_instances
    from plateseg.engines.scale import field_tiling
    from plateseg.tiling.instances import TABLE_COLUMNS, seam_counts, seam_note
    from plateseg.io.ngff import create_well_labels, record_blocks

    log = log or logging.getLogger(__name__)
    image, out, partial, fields, arrays, tile_size, model, meta, chans = _open_well(
        image, out, checkpoint, load_checkpoint, device, channels, tile_size)
    rows_dir = partial / "rows"
    id_stride = default_id_stride(meta, int(tile_size), int(halo))
    scales = _field_scales(scales, fields)
    settings = {"engine": "maskrcnn", "channels": chans, "tile_size": int(tile_size), "halo": int(halo),
                "score_threshold": float(score_threshold), "mask_threshold": float(mask_threshold),
                "min_area": int(min_area), "id_stride": int(id_stride), "scale": scales, "zoom": "window"}
    fingerprint = maps_fingerprint(checkpoint, image, settings)
    shapes = {f: tuple(int(a) for a in arrays[f].shape[-2:]) for f in fields}
    store_attrs = {**(attrs or {}), "method": "maskrcnn",
                   "model": {k: meta.get(k) for k in ("arch", "channels", "normalization", "data_hash",
                                                      "code_version", "pixel_size")},
                   "checkpoint": str(checkpoint), "settings": settings, "fingerprint": fingerprint,
                   "scale": scales}

    def create(path):
        create_well_labels(path, shapes, tile_size=int(tile_size), pixel_size=pixel_size, attrs=store_attrs)
        (path / "rows").mkdir()

    record = _open_partial(partial, fingerprint, fields, create, log)
    root = zarr.open_group(str(partial), mode="r+")

    def label_array(group, f):
        return group[f"{f}/labels/{group.attrs.get('label_name', 'nuclei')}/0"]

    def predict_field(f, arr, start, written):
        def save_rows(tile, rows):
            write_table(rows, rows_dir / f"{f}_{tile.number:06d}.parquet")
            written(tile)

        _zoom_note(log, f, scales[str(f)], tile_size, halo)
        predict_instances(model, meta, arr, tile_size, halo, batch_size, score_threshold=score_threshold,
                          mask_threshold=mask_threshold, min_area=min_area, start=start,
                          on_tile_written=save_rows, channels=chans, out=label_array(root, f),
                          relabel=False, id_stride=id_stride, zoom=scales[str(f)])

    _tile_loop(fields, arrays, tile_size, halo, scales, record, partial, predict_field, model, on_tile_written, log)

    tables, seams = [], {}
    with atomic_path(out) as tmp:
        final = create_well_labels(tmp, shapes, tile_size=int(tile_size), pixel_size=pixel_size,
                                   attrs={k: v for k, v in store_attrs.items() if k != "fingerprint"})
        for f in fields:
            parts = sorted(rows_dir.glob(f"{f}_*.parquet"))
            table = (pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True) if parts
                     else pd.DataFrame({c: [] for c in TABLE_COLUMNS}).astype({"label": np.uint32}))
            src = label_array(root, f)
            chunks = [t.core for t in tile_grid(shapes[f], tile_size, 0)]
            present = set()
            for sl in chunks:
                present.update(np.unique(src[sl]).tolist())
            table = table[table["label"].isin(present)]
            for sl in chunks:
                final[f][sl] = relabel_instances(src[sl], table, drop_empty=False)[0]
            table = relabel_instances(np.zeros((0,), np.uint32), table, drop_empty=False)[1]
            field_tile, field_halo = field_tiling(int(tile_size), int(halo), scales[str(f)])
            seams[f] = {"objects": len(table), **seam_counts(table, shapes[f], field_tile, field_halo)}
            table.insert(0, "field", np.int64(f))
            tables.append(table)
            log.info("field %d: %d instances%s", f, len(table), seam_note(f, seams[f], field_tile, field_halo, log))
        record_blocks(tmp, seams)
        write_table(pd.concat(tables, ignore_index=True), table_out)
    remove_path(partial)
    log.info("instances of %d field(s) written to %s and %s", len(fields), out, table_out)
    return out


def infer_well(engine: str, image, checkpoint, out, table_out=None, channel: int | None = None,
               settings: dict | None = None, threads: int | None = None, scale=None, **kwargs) -> Path:
    """Rules infer_unet, infer_maskrcnn: the well inference of ``engine`` on the job's device.

    Parameters
    ----------
    engine : {"unet", "maskrcnn"}
        ``unet``: :func:`infer_well_maps` writes the maps at ``out``; ``maskrcnn``:
        :func:`infer_well_instances` writes the labels at ``out`` and their table at ``table_out``.
    image, checkpoint, out
        As :func:`infer_well_maps`.
    table_out : path-like, optional
        The Mask R-CNN instance table (required for ``maskrcnn``, not allowed for ``unet``).
    channel : int, optional
        The image channel fed to the model (default the checkpoint's channels).
    settings : dict, optional
        Engine-specific keyword arguments (Mask R-CNN ``score_threshold``, ``mask_threshold``,
        ``min_area``).
    threads : int, optional
        torch CPU threads.
    scale : path-like, optional
        The well's zoom record (rule estimate_scale, :func:`plateseg.engines.scale.read_scales`).
    **kwargs
        ``tile_size``, ``halo``, ``batch_size``, ``pixel_size``, ``attrs`` as :func:`infer_well_maps`.

    Returns
    -------
    pathlib.Path
        ``out``.

    Examples
    --------
    infer_well("unet", "results/P/A01/image.zarr", "results/models/unet/all.pt",
                   "results/P/A01/unet.zarr", channel=0, tile_size=256, halo=32)
    """
    from plateseg.engines.scale import read_scales
    from plateseg.pipeline.run import torch_device

    if engine not in ("unet", "maskrcnn"):
        raise ValueError(f"unknown engine {engine!r} (unet or maskrcnn)")
    if (table_out is None) != (engine == "unet"):
        raise ValueError(f"{engine} inference {'needs' if engine == 'maskrcnn' else 'takes no'} table_out")
    channels = None if channel is None else [int(channel)]
    kwargs.update(channels=channels, device=torch_device(threads), scales=read_scales(scale), **(settings or {}))
    if engine == "unet":
        return infer_well_maps(image, checkpoint, out, **kwargs)
    return infer_well_instances(image, checkpoint, out, table_out, **kwargs)

