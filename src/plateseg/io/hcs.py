"""The plate as one OME-Zarr (NGFF 0.5) high-content-screening store, with every label set beside its image.

Layout (``results/{plate}/plate.zarr``)::

    plate.zarr/                         {"ome": {"plate": {rows, columns, wells, field_count, ...}}}
    plate.zarr/B/                       row group
    plate.zarr/B/3/                     well group {"ome": {"well": {"images": [{"path": "1"}, ...]}}}
    plate.zarr/B/3/1/                   field: multiscale image (c, y, x), levels 0, 1, ... (2x each)
    plate.zarr/B/3/1/labels/            {"ome": {"labels": ["nuclei", "unet", "maskrcnn", "classical"]}}
    plate.zarr/B/3/1/labels/nuclei/     multiscale image-label (y, x), uint32, levels as the image

A well is written by its own job (:func:`write_hcs_well`, from the pipeline's well stores of
:mod:`plateseg.io.ngff`), a row group (:func:`write_hcs_row`) and the plate group (:func:`write_hcs_plate`)
by small jobs of their own that only write their ``zarr.json``, so no two jobs write the same file and
ome-zarr-py and napari open the plate, a well or a field with its labels.
"""
from __future__ import annotations

import json
import logging
from typing import Mapping

import numpy as np
import zarr

from plateseg.io.files import atomic_path
from plateseg.io.ngff import NGFF_VERSION, _multiscale, block_record, channel_names, list_fields, open_field, open_labels

__all__ = ["pyramid_levels", "downsample", "write_hcs_well", "write_hcs_row", "write_hcs_plate", "well_path"]

log = logging.getLogger(__name__)


def well_path(row: str, column: int) -> str:
    """The well's path in the plate (``"B/3"``)."""
    return f"{row}/{int(column)}"


def pyramid_levels(shape: tuple[int, ...], tile_size: int) -> int:
    """Number of levels: halve until the last level fits in one tile.

    Examples
    --------
    >>> pyramid_levels((256, 256), 256), pyramid_levels((1000, 300), 256), pyramid_levels((10, 10), 4)
    (1, 3, 3)
    """
    levels, size = 1, max(shape[-2:])
    while size > tile_size:
        size = -(-size // 2)
        levels += 1
    return levels


def downsample(a: np.ndarray, labels: bool = False) -> np.ndarray:
    """Halve the last two axes: the mean of each 2x2 block for an image (dtype kept), the top-left pixel of
    each block for labels (no new label values at object borders). Odd edges keep their last pixels.

    Examples
    --------
    >>> downsample(np.array([[0, 2, 4], [2, 4, 6]], np.uint16)).tolist()
    [[2, 5]]
    >>> downsample(np.array([[1, 2, 3], [4, 5, 6]]), labels=True).tolist()
    [[1, 3]]
    """
    if labels:
        return a[..., ::2, ::2]
    h, w = a.shape[-2:]
    pad = [(0, 0)] * (a.ndim - 2) + [(0, h % 2), (0, w % 2)]
    p = np.pad(a.astype(np.float64), pad, mode="edge")
    m = p.reshape(*p.shape[:-2], p.shape[-2] // 2, 2, p.shape[-1] // 2, 2).mean(axis=(-3, -1))
    return np.rint(m).astype(a.dtype) if np.issubdtype(a.dtype, np.integer) else m.astype(a.dtype)


def _write_pyramid(group: zarr.Group, src, dims: tuple[str, ...], tile_size: int, labels: bool) -> int:
    """Levels ``0..n-1`` of ``src`` (an array-like, read in blocks, never whole) in ``group``; returns n.
    Each level is written block by block from the one before (blocks of even size, so the result is
    :func:`downsample` of the whole level)."""
    levels = pyramid_levels(src.shape, tile_size)
    prev = src
    for k in range(levels):
        h, w = prev.shape[-2:]
        shape = tuple(prev.shape) if k == 0 else tuple(prev.shape[:-2]) + (-(-h // 2), -(-w // 2))
        chunks = (1,) * (len(shape) - 2) + (min(tile_size, shape[-2]), min(tile_size, shape[-1]))
        level = group.create_array(str(k), shape=shape, chunks=chunks, dtype=src.dtype, fill_value=0,
                                   dimension_names=dims)
        n = 4 * tile_size if k == 0 else 8 * tile_size  # source pixels per block side (even)
        for y in range(0, h, n):
            for x in range(0, w, n):
                block = np.asarray(prev[..., y:y + n, x:x + n])
                if k == 0:
                    level[..., y:y + n, x:x + n] = block
                else:
                    level[..., y // 2:(y + n) // 2, x // 2:(x + n) // 2] = downsample(block, labels)
        prev = level
    return levels


def write_hcs_well(image_store, label_stores: Mapping[str, object], out, row: str, column: int,
                   tile_size: int = 256) -> None:
    """Write one well of the HCS plate: every field's image pyramid and its label sets, atomically.

    Parameters
    ----------
    image_store : path-like
        The pipeline's well image store (:mod:`plateseg.io.ngff`).
    label_stores : mapping name -> path-like
        Label sets of the well, e.g. ``{"nuclei": ensemble.zarr, "unet": unet_labels.zarr}``; every field of
        the image must have labels in each. A store's record of its blocks
        (:func:`plateseg.io.ngff.block_record`) goes with each field's labels (attrs ``plateseg.blocks``).
    out : path-like
        ``plate.zarr/<row>/<column>``.
    row, column : the well's position (metadata of the field images).
    tile_size : int
        Chunk edge; the pyramid halves until a level fits in one chunk.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from plateseg.io.ngff import write_well_image, write_well_labels
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> write_well_image(d / "image.zarr", {1: np.ones((1, 8, 8), np.uint16)}, ["DNA"], 4, 0.5)
    >>> write_well_labels(d / "labels.zarr", {1: np.eye(8, dtype=np.uint32)}, tile_size=4)
    >>> write_hcs_well(d / "image.zarr", {"nuclei": d / "labels.zarr"}, d / "plate.zarr" / "A" / "1", "A", 1, 4)
    >>> g = zarr.open_group(str(d / "plate.zarr" / "A" / "1"), mode="r")
    >>> g["1/1"].shape, g["1/labels/nuclei/1"].shape, g["1/labels"].attrs["ome"]["labels"]
    ((1, 4, 4), (4, 4), ['nuclei'])
    """
    channels = channel_names(image_store)
    fields = list_fields(image_store)
    src = zarr.open_group(str(image_store), mode="r")
    records = {name: block_record(store) or {} for name, store in label_stores.items()}
    with atomic_path(out) as tmp:
        well = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        well.attrs["ome"] = {"version": NGFF_VERSION,
                             "well": {"images": [{"path": str(f), "acquisition": 0} for f in fields]}}
        for i, field in enumerate(fields, start=1):
            meta = src[str(field)].attrs["ome"]["multiscales"][0]
            axes, scale = meta["axes"], meta["datasets"][0]["coordinateTransformations"][0]["scale"]
            image = open_field(image_store, field)
            g = well.create_group(str(field))
            levels = _write_pyramid(g, image, ("c", "y", "x"), tile_size, labels=False)
            omero = dict(src[str(field)].attrs["ome"]["omero"])
            omero["channels"] = [{**c, "window": _window(image, ci)} for ci, c in enumerate(omero["channels"])]
            g.attrs["ome"] = {"version": NGFF_VERSION, "omero": omero,
                              "multiscales": [_multiscale(f"{row}{int(column):02d} field {field}", axes, scale, levels)]}
            lg = g.create_group("labels")
            lg.attrs["ome"] = {"version": NGFF_VERSION, "labels": list(label_stores)}
            for name, store in label_stores.items():
                lab = open_labels(store, field)
                if tuple(lab.shape) != tuple(image.shape[1:]):
                    raise ValueError(f"{store}: labels of field {field} are {tuple(lab.shape)}, the image "
                                     f"{tuple(image.shape[1:])}")
                lab_g = lg.create_group(name)
                lab_levels = _write_pyramid(lab_g, lab, ("y", "x"), tile_size, labels=True)
                lab_g.attrs["ome"] = {
                    "version": NGFF_VERSION,
                    "multiscales": [_multiscale(name, axes[1:], scale[1:], lab_levels)],
                    "image-label": {"version": NGFF_VERSION, "source": {"image": "../../"}},
                }
                if field in records[name]:  # how the field was labelled block by block, for plateseg qc
                    lab_g.attrs["plateseg"] = {"blocks": records[name][field]}
            log.info("field %d (%d/%d): %s x %d channels, %d level(s), labels %s", field, i, len(fields),
                     image.shape[1:], len(channels), levels, ", ".join(label_stores))


def _window(image, channel: int, max_pixels: int = 1 << 22) -> dict:
    """Display range of a channel (0.1 and 99.9 percentiles) so a viewer opens it with visible contrast; on a
    field of more than ``max_pixels`` from a regular subsample (every n-th row and column)."""
    step = max(1, int(np.ceil(np.sqrt(np.prod(image.shape[-2:]) / max_pixels))))
    plane = np.asarray(image[channel, ::step, ::step])
    lo, hi = (float(v) for v in np.percentile(plane, [0.1, 99.9]))
    return {"start": lo, "end": max(hi, lo + 1), "min": float(plane.min()), "max": float(plane.max())}


def write_hcs_row(root, row: str) -> None:
    """Write the (empty) group of one row of an HCS plate: ``<root>/<row>/zarr.json``, atomically."""
    _write_group_json(f"{root}/{row}", {})


def write_hcs_plate(root, name: str, wells: list[tuple[str, int]], field_count: int) -> None:
    """Write the plate group metadata of an HCS plate: ``<root>/zarr.json`` only, atomically.

    The wells (:func:`write_hcs_well`) and rows (:func:`write_hcs_row`) are written apart.

    Parameters
    ----------
    root : path-like
        ``plate.zarr``.
    name : str
        The plate's name.
    wells : list of (row, column)
        Every well of the plate.
    field_count : int
        The largest number of fields in a well.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()) / "plate.zarr"
    >>> write_hcs_plate(d, "P1", [("B", 3), ("A", 1), ("B", 10)], 2)
    >>> write_hcs_row(d, "A"); write_hcs_row(d, "B")
    >>> p = zarr.open_group(str(d), mode="r").attrs["ome"]["plate"]
    >>> [r["name"] for r in p["rows"]], [c["name"] for c in p["columns"]], [w["path"] for w in p["wells"]]
    (['A', 'B'], ['1', '3', '10'], ['A/1', 'B/3', 'B/10'])
    """
    rows = sorted({r for r, _ in wells}, key=lambda r: (len(r), r))
    columns = sorted({int(c) for _, c in wells})
    plate = {
        "version": NGFF_VERSION,
        "name": str(name),
        "acquisitions": [{"id": 0, "name": "plateseg"}],
        "field_count": int(field_count),
        "rows": [{"name": r} for r in rows],
        "columns": [{"name": str(c)} for c in columns],
        "wells": [{"path": well_path(r, c), "rowIndex": rows.index(r), "columnIndex": columns.index(int(c))}
                  for r, c in sorted(wells, key=lambda w: (len(w[0]), w[0], int(w[1])))],
    }
    _write_group_json(root, {"ome": {"version": NGFF_VERSION, "plate": plate}})
    log.info("plate %s: %d wells in %d rows x %d columns, up to %d fields", name, len(wells), len(rows),
             len(columns), field_count)


def _write_group_json(path, attrs: dict) -> None:
    from pathlib import Path

    final = Path(path) / "zarr.json"
    with atomic_path(final) as tmp:
        tmp.write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": attrs}, indent=2))
