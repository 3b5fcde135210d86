"""OME-Zarr (NGFF 0.5, zarr v3) stores for one well: images per field and label images.

Layout of a well image store (``image.zarr``)::

    image.zarr/                 well group   {"ome": {"well": {"images": [{"path": "1"}, ...]}}}
    image.zarr/<field>/         multiscale image, axes (c, y, x), channel names in "omero"
    image.zarr/<field>/0        the full-resolution array, chunks (1, tile, tile)

Layout of a label store (``labels.zarr``, ``classical.zarr``, ...)::

    labels.zarr/<field>/labels/          NGFF labels group {"ome": {"labels": ["nuclei"]}}
    labels.zarr/<field>/labels/nuclei/   multiscale image-label, axes (y, x), uint32
    labels.zarr/<field>/labels/nuclei/0  chunks (tile, tile)

A label store written block by block records per field, in its attrs, its blocks, the objects kept whole
across a block seam and those larger than the halo (``plateseg.blocks``, :func:`record_blocks`).

The ``labels`` group of a field can be copied into ``image.zarr/<field>/`` to view image and
labels together in napari.
"""
from __future__ import annotations

import logging
from typing import Mapping

import numpy as np
import zarr

from plateseg.io.files import atomic_path

__all__ = [
    "NGFF_VERSION",
    "write_well_image",
    "create_well_image",
    "open_field",
    "field_shapes",
    "list_fields",
    "channel_names",
    "write_well_labels",
    "create_well_labels",
    "read_labels",
    "open_labels",
    "label_fields",
    "record_blocks",
    "block_record",
]

log = logging.getLogger(__name__)

NGFF_VERSION = "0.5"


def _multiscale(name: str, axes: list[dict], scale: list[float], levels: int = 1) -> dict:
    """NGFF multiscale metadata: level k at path "k", its space axes scaled by 2**k."""
    datasets = [{"path": str(k), "coordinateTransformations": [{"type": "scale", "scale": [
        v * 2**k if ax["type"] == "space" else v for v, ax in zip(scale, axes)]}]} for k in range(levels)]
    return {"name": name, "axes": axes, "datasets": datasets}


def _space_axes() -> list[dict]:
    return [
        {"name": "y", "type": "space", "unit": "micrometer"},
        {"name": "x", "type": "space", "unit": "micrometer"},
    ]


def create_well_image(
    path,
    shapes: Mapping[int, tuple[int, int]],
    channels: list[str],
    dtype,
    tile_size: int,
    pixel_size: float,
    attrs: Mapping | None = None,
) -> zarr.Group:
    """Create an empty well image store with one (c, y, x) array per field.

    Parameters
    ----------
    path : path-like
        Folder of the new store (overwritten).
    shapes : mapping field -> (height, width)
    channels : list of str
        Channel names, in the order of the ``c`` axis.
    dtype : numpy dtype of the pixels (kept from the raw images).
    tile_size : int
        Chunk edge: one chunk is one tile of one channel.
    pixel_size : float
        Micrometres per pixel.
    attrs : mapping, optional
        Extra attributes stored under ``"plateseg"`` (e.g. plate, well, source files).
    """
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    fields = sorted(int(f) for f in shapes)
    root.attrs.update(
        {
            "ome": {
                "version": NGFF_VERSION,
                "well": {"images": [{"path": str(f), "acquisition": 0} for f in fields]},
            },
            "plateseg": dict(attrs or {}),
        }
    )
    for f in fields:
        h, w = shapes[f]
        g = root.create_group(str(f))
        g.attrs.update(
            {
                "ome": {
                    "version": NGFF_VERSION,
                    "multiscales": [
                        _multiscale(
                            f"field {f}",
                            [{"name": "c", "type": "channel"}] + _space_axes(),
                            [1.0, pixel_size, pixel_size],
                        )
                    ],
                    "omero": {
                        "channels": [{"label": c, "active": True} for c in channels],
                    },
                }
            }
        )
        g.create_array(
            "0",
            shape=(len(channels), h, w),
            chunks=(1, min(tile_size, h), min(tile_size, w)),
            dtype=dtype,
            fill_value=0,
            dimension_names=("c", "y", "x"),
        )
    return root


def write_well_image(path, fields: Mapping[int, np.ndarray], channels, tile_size, pixel_size, attrs=None):
    """Write in-memory (c, y, x) field arrays as a well image store, atomically."""
    with atomic_path(path) as tmp:
        dtype = next(iter(fields.values())).dtype
        root = create_well_image(
            tmp, {f: a.shape[1:] for f, a in fields.items()}, list(channels), dtype, tile_size, pixel_size, attrs
        )
        for f, a in fields.items():
            root[f"{int(f)}/0"][...] = a


def list_fields(path) -> list[int]:
    """Field numbers of a well image or label store, in order."""
    root = zarr.open_group(str(path), mode="r")
    if "well" in root.attrs.get("ome", {}):
        return [int(im["path"]) for im in root.attrs["ome"]["well"]["images"]]
    return sorted(int(k) for k in root.group_keys())


def open_field(path, field: int) -> zarr.Array:
    """The (c, y, x) array of one field of a well image store (lazy, read-only)."""
    root = zarr.open_group(str(path), mode="r")
    key = f"{int(field)}/0"
    if key not in root:
        raise KeyError(f"{path}: no field {field} (fields: {list_fields(path)})")
    return root[key]


def field_shapes(path) -> dict[int, tuple[int, int]]:
    """field -> ``(height, width)`` of every field of a well image store (from the arrays' metadata)."""
    return {f: tuple(int(v) for v in open_field(path, f).shape[-2:]) for f in list_fields(path)}


def channel_names(path) -> list[str]:
    """Channel names of a well image store, in ``c`` order."""
    root = zarr.open_group(str(path), mode="r")
    first = list_fields(path)[0]
    return [c["label"] for c in root[str(first)].attrs["ome"]["omero"]["channels"]]


def _label_array(root: zarr.Group, field: int, shape, name: str, tile_size: int, pixel_size: float) -> zarr.Array:
    lg = root.create_group(f"{int(field)}/labels")
    lg.attrs.update({"ome": {"version": NGFF_VERSION, "labels": [name]}})
    g = lg.create_group(name)
    g.attrs.update(
        {
            "ome": {
                "version": NGFF_VERSION,
                "multiscales": [_multiscale(name, _space_axes(), [pixel_size, pixel_size])],
                "image-label": {"version": NGFF_VERSION},
            }
        }
    )
    h, w = (int(a) for a in shape)
    return g.create_array(
        "0",
        shape=(h, w),
        chunks=(min(tile_size, h), min(tile_size, w)),
        dtype=np.uint32,
        fill_value=0,
        dimension_names=("y", "x"),
    )


def _new_label_store(path, name: str, attrs: Mapping | None) -> zarr.Group:
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    root.attrs.update({"plateseg": dict(attrs or {}), "label_name": name})
    return root


def create_well_labels(
    path,
    shapes: Mapping[int, tuple[int, int]],
    name: str = "nuclei",
    tile_size: int = 256,
    pixel_size: float = 1.0,
    attrs: Mapping | None = None,
) -> dict[int, zarr.Array]:
    """Create an empty label store (all 0) with one uint32 ``(y, x)`` array per field, to fill tile by tile.

    Not atomic: for a store written in place over time (e.g. a resumable ``.partial`` store that is
    moved into place when complete). Returns field -> writable array.
    """
    root = _new_label_store(path, name, attrs)
    return {int(f): _label_array(root, f, shapes[f], name, tile_size, pixel_size) for f in sorted(shapes)}


def write_well_labels(
    path,
    labels,
    name: str = "nuclei",
    tile_size: int = 256,
    pixel_size: float = 1.0,
    attrs: Mapping | None = None,
) -> None:
    """Write uint32 label images, one per field, as NGFF label groups, atomically.

    ``labels`` is a mapping field -> (H, W) array, or an iterable of (field, array) pairs (e.g. a
    generator, so that only one field is in memory at a time).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> lab = np.zeros((8, 8), np.uint32); lab[2:4, 2:4] = 1
    >>> write_well_labels(d / "labels.zarr", {1: lab}, tile_size=4)
    >>> int(read_labels(d / "labels.zarr", 1).max())
    1
    """
    with atomic_path(path) as tmp:
        root = _new_label_store(tmp, name, attrs)
        pairs = sorted(labels.items()) if isinstance(labels, Mapping) else labels
        for f, lab in pairs:
            lab = np.asarray(lab)
            if lab.ndim != 2:
                raise ValueError(f"labels of field {f} must be 2-D (y, x), got shape {lab.shape}")
            arr = _label_array(root, f, lab.shape, name, tile_size, pixel_size)
            arr[...] = lab.astype(np.uint32, copy=False)


def label_fields(path) -> list[int]:
    """Field numbers present in a label store."""
    root = zarr.open_group(str(path), mode="r")
    return sorted(int(k) for k in root.group_keys())


def open_labels(path, field: int) -> zarr.Array:
    """The uint32 ``(y, x)`` label array of one field of a label store (lazy, read-only)."""
    root = zarr.open_group(str(path), mode="r")
    name = root.attrs.get("label_name", "nuclei")
    key = f"{int(field)}/labels/{name}/0"
    if key not in root:
        raise KeyError(f"{path}: no labels for field {field} (fields: {label_fields(path)})")
    return root[key]


def read_labels(path, field: int) -> np.ndarray:
    """The uint32 label image of one field of a label store."""
    return open_labels(path, field)[...]


def record_blocks(path, counts: Mapping[int, Mapping]) -> None:
    """Record in a label store's attrs (``plateseg.blocks``) how each field was labelled block by block.

    ``counts`` is field -> ``{"objects", "blocks", "on_seams", "cut_by_halo"}``
    (:func:`plateseg.tiling.instances.seam_counts` and the field's number of objects); the store's other
    ``plateseg`` attrs are kept. Read back by :func:`block_record`.
    """
    root = zarr.open_group(str(path), mode="r+")
    plateseg = dict(root.attrs.get("plateseg", {}))
    root.attrs.update({"plateseg": {**plateseg, "blocks": {str(int(f)): dict(v) for f, v in counts.items()}}})


def block_record(path) -> dict[int, dict] | None:
    """field -> ``{"objects", "blocks", "on_seams", "cut_by_halo"}`` recorded by :func:`record_blocks` in a label
    store, or None when the store has no record (its labels were not made by the blockwise labelling, e.g.
    Mask R-CNN's, inferred tile by tile).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> write_well_labels(d / "labels.zarr", {1: np.zeros((8, 8), np.uint32)}, tile_size=4)
    >>> block_record(d / "labels.zarr") is None
    True
    >>> record_blocks(d / "labels.zarr", {1: {"objects": 0, "blocks": 1, "on_seams": 0, "cut_by_halo": 0}})
    >>> block_record(d / "labels.zarr")
    {1: {'objects': 0, 'blocks': 1, 'on_seams': 0, 'cut_by_halo': 0}}
    """
    blocks = zarr.open_group(str(path), mode="r").attrs.get("plateseg", {}).get("blocks")
    return None if blocks is None else {int(f): dict(v) for f, v in blocks.items()}
