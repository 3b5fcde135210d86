"""Per-object measurements with CellProfiler / pycytominer column names.

One row per object of a field: ``Metadata_ObjectNumber``, and under the compartment prefix (``Nuclei_``)
location, shape (``AreaShape_*``) and, for every channel, intensity (``Intensity_*_<channel>``) and texture
(``Texture_*_<channel>_3``) features, so ``pycytominer`` infers the features (``features="infer"``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from skimage import measure

from plateseg.measure.texture import TEXTURE_FEATURES, glcm_features

__all__ = ["COMPARTMENT", "SHAPE_COLUMNS", "TEXTURE_DISTANCE", "measure_field", "measure_field_blocks", "measure_well"]

COMPARTMENT = "Nuclei"
TEXTURE_DISTANCE = 3

# skimage regionprops name -> CellProfiler name
SHAPE_COLUMNS = {
    "area": "AreaShape_Area",
    "perimeter": "AreaShape_Perimeter",
    "eccentricity": "AreaShape_Eccentricity",
    "solidity": "AreaShape_Solidity",
    "extent": "AreaShape_Extent",
    "area_convex": "AreaShape_ConvexArea",
    "axis_major_length": "AreaShape_MajorAxisLength",
    "axis_minor_length": "AreaShape_MinorAxisLength",
    "orientation": "AreaShape_Orientation",
    "equivalent_diameter_area": "AreaShape_EquivalentDiameter",
    "euler_number": "AreaShape_EulerNumber",
}
_INTENSITY = {
    "intensity_mean": "MeanIntensity",
    "intensity_std": "StdIntensity",
    "intensity_min": "MinIntensity",
    "intensity_max": "MaxIntensity",
}


def measure_field(labels: np.ndarray, image: np.ndarray, channels: list[str], compartment: str = COMPARTMENT) -> pd.DataFrame:
    """Measure every object of one field.

    Parameters
    ----------
    labels : (H, W) integer array
        Instance labels, 0 = background. ``Metadata_ObjectNumber`` is the label value.
    image : (C, H, W) array
        The field's channels, raw intensities.
    channels : list of str
        Channel names used in the ``Nuclei_Intensity_*_<name>`` columns.
    compartment : str
        The column prefix: ``Nuclei``, ``Cells`` or ``Cytoplasm``.

    Returns
    -------
    pandas.DataFrame
        ``Metadata_ObjectNumber``, ``Nuclei_Location_Center_X/Y`` (pixels), ``Nuclei_AreaShape_*``,
        ``Nuclei_Intensity_{Mean,Std,Min,Max,Integrated}Intensity_<channel>`` and
        ``Nuclei_Texture_<feature>_<channel>_3`` (:func:`plateseg.measure.texture.glcm_features` at 3 px);
        no rows if the field is empty.

    Examples
    --------
    >>> lab = np.zeros((10, 10), int); lab[2:5, 2:6] = 1
    >>> img = np.ones((1, 10, 10)) * 3
    >>> df = measure_field(lab, img, ["DNA"])
    >>> df[["Metadata_ObjectNumber", "Nuclei_AreaShape_Area", "Nuclei_Intensity_IntegratedIntensity_DNA"]].values.tolist()
    [[1.0, 12.0, 36.0]]
    """
    if image.ndim != 3 or image.shape[1:] != labels.shape:
        raise ValueError(f"image must be (C, H, W) matching labels {labels.shape}, got {image.shape}")
    if len(channels) != image.shape[0]:
        raise ValueError(f"{len(channels)} channel names for {image.shape[0]} channels")
    labels = np.asarray(labels).astype(np.int64, copy=False)
    props = ["label", "centroid", *SHAPE_COLUMNS, *_INTENSITY]
    if labels.max() == 0:
        cols = _columns(channels, compartment)
        return pd.DataFrame({c: pd.Series(dtype=np.int64 if c == "Metadata_ObjectNumber" else np.float64) for c in cols})
    t = measure.regionprops_table(
        labels, intensity_image=np.moveaxis(image, 0, -1).astype(np.float64), properties=props
    )
    n = compartment
    out = {
        "Metadata_ObjectNumber": t["label"].astype(np.int64),
        f"{n}_Location_Center_X": t["centroid-1"],
        f"{n}_Location_Center_Y": t["centroid-0"],
    }
    for k, name in SHAPE_COLUMNS.items():
        out[f"{n}_{name}"] = t[k]
    area = t["area"]
    out[f"{n}_AreaShape_FormFactor"] = np.where(t["perimeter"] > 0, 4 * np.pi * area / np.maximum(t["perimeter"], 1e-9) ** 2, 0.0)
    for ci, ch in enumerate(channels):
        for k, name in _INTENSITY.items():
            out[f"{n}_Intensity_{name}_{ch}"] = t[f"{k}-{ci}"]
        out[f"{n}_Intensity_IntegratedIntensity_{ch}"] = t[f"intensity_mean-{ci}"] * area
    textures = [[glcm_features(image[ci][sl], labels[sl] == lab, TEXTURE_DISTANCE) for ci in range(len(channels))]
                for lab, sl in zip(t["label"], _slices(labels, t["label"]))]
    for ci, ch in enumerate(channels):
        for name in TEXTURE_FEATURES.values():
            out[f"{n}_Texture_{name}_{ch}_{TEXTURE_DISTANCE}"] = np.array([f[ci][name] for f in textures], np.float64)
    return pd.DataFrame(out)[_columns(channels, compartment)]


def object_boxes(labels, block_size: int, threads: int = 1) -> pd.DataFrame:
    """Bounding box of every object of a label array, read block by block (``threads`` blocks at a time):
    ``label, y0, x0, y1, x1``.

    Examples
    --------
    >>> lab = np.zeros((6, 8), int); lab[1:3, 2:7] = 4; lab[4, 0] = 1
    >>> object_boxes(lab, 4).values.tolist()
    [[1, 4, 0, 5, 1], [4, 1, 2, 3, 7]]
    """
    from scipy import ndimage

    from plateseg.tiling.grid import map_windows, tile_grid

    def block_boxes(block, t):
        y, x = t.core[0].start, t.core[1].start
        found = ndimage.find_objects(np.asarray(block).astype(np.int64, copy=False))
        return [(lab, [y + sl[0].start, x + sl[1].start, y + sl[0].stop, x + sl[1].stop])
                for lab, sl in enumerate(found, start=1) if sl is not None]

    boxes: dict[int, list] = {}
    for _, found in map_windows(block_boxes, lambda t: labels[t.core], tile_grid(labels.shape, block_size, 0), threads):
        for lab, b in found:
            old = boxes.setdefault(lab, b)
            boxes[lab] = [min(old[0], b[0]), min(old[1], b[1]), max(old[2], b[2]), max(old[3], b[3])]
    return pd.DataFrame([[k, *v] for k, v in sorted(boxes.items())], columns=["label", "y0", "x0", "y1", "x1"],
                        dtype=np.int64)


def measure_field_blocks(labels, image, channels: list[str], compartment: str = COMPARTMENT,
                         block_size: int = 2048, threads: int = 1) -> pd.DataFrame:
    """:func:`measure_field` of a field too large to hold, block by block, every object measured whole.

    Each object belongs to the block that holds the centre of its bounding box (boxes from a first pass,
    :func:`object_boxes`); a block's objects are measured in the smallest window holding all of them (its
    core plus how far they reach), other objects masked out, and their centres moved back to field
    coordinates. The rows equal :func:`measure_field` of the whole field. ``threads`` blocks are measured at
    once (:func:`plateseg.tiling.grid.map_windows`: ``threads + 1`` windows in memory), their rows joined in
    block order, so the table does not depend on it.

    Parameters
    ----------
    labels : (H, W) array-like
        Label array (e.g. a zarr array, read in windows).
    image : (C, H, W) array-like
    channels, compartment
        As :func:`measure_field`.
    block_size : int
    threads : int

    Examples
    --------
    >>> lab = np.zeros((12, 12), int); lab[2:9, 3:10] = 1; lab[10:12, 0:3] = 2
    >>> img = np.arange(144.0).reshape(1, 12, 12)
    >>> a, b = measure_field(lab, img, ["DNA"]), measure_field_blocks(lab, img, ["DNA"], block_size=4)
    >>> bool(np.allclose(a.to_numpy(float), b.to_numpy(float), equal_nan=True))
    True
    """
    from plateseg.tiling.grid import map_windows

    boxes = object_boxes(labels, int(block_size), threads)
    if not len(boxes):
        return measure_field(np.zeros((1, 1), np.int64), np.zeros((len(channels), 1, 1)), channels, compartment)
    owner_y = ((boxes["y0"] + boxes["y1"]) // 2) // block_size
    owner_x = ((boxes["x0"] + boxes["x1"]) // 2) // block_size
    # per block its objects' ids and the smallest window holding them all
    owned = [(own["label"].to_numpy(), slice(int(own["y0"].min()), int(own["y1"].max())),
              slice(int(own["x0"].min()), int(own["x1"].max())))
             for _, own in boxes.groupby([owner_y, owner_x], sort=True)]

    def read(block):
        _, ys, xs = block
        return np.asarray(labels[ys, xs]), np.asarray(image[:, ys, xs])

    def measured(window, block):
        (lab, img), (ids, ys, xs) = window, block
        lab = lab.astype(np.int64, copy=False)
        df = measure_field(np.where(np.isin(lab, ids), lab, 0), img, channels, compartment)
        df[f"{compartment}_Location_Center_X"] += xs.start
        df[f"{compartment}_Location_Center_Y"] += ys.start
        return df

    tables = [df for _, df in map_windows(measured, read, owned, threads)]
    return pd.concat(tables, ignore_index=True).sort_values("Metadata_ObjectNumber", kind="stable").reset_index(drop=True)


def _slices(labels: np.ndarray, ids) -> list[tuple[slice, slice]]:
    from scipy import ndimage

    found = ndimage.find_objects(labels)
    return [found[int(i) - 1] for i in ids]


def _columns(channels: list[str], compartment: str = COMPARTMENT) -> list[str]:
    n = compartment
    cols = ["Metadata_ObjectNumber", f"{n}_Location_Center_X", f"{n}_Location_Center_Y",
            *(f"{n}_{c}" for c in SHAPE_COLUMNS.values()), f"{n}_AreaShape_FormFactor"]
    for ch in channels:
        cols += [f"{n}_Intensity_{c}_{ch}" for c in _INTENSITY.values()] + [f"{n}_Intensity_IntegratedIntensity_{ch}"]
    for ch in channels:
        cols += [f"{n}_Texture_{c}_{ch}_{TEXTURE_DISTANCE}" for c in TEXTURE_FEATURES.values()]
    return cols


def measure_well(image_store, label_store, metadata: dict, picks: pd.DataFrame | None = None,
                 compartments: dict | None = None, block_size: int | None = None, threads: int = 1) -> pd.DataFrame:
    """Per-object table of a well: :func:`measure_field` over its fields, with ``Metadata_*`` columns.

    Parameters
    ----------
    image_store, label_store : path-like
        The well image store and its label store (:mod:`plateseg.io.ngff`).
    metadata : dict
        ``Metadata_*`` columns (first, one value each).
    picks : pandas.DataFrame, optional
        The ensemble's picks (``field``, ``label``, ``engine``, ``predicted_iou`` per object): only
        then the table has ``Metadata_Ensemble_Source`` (the engine each object's mask came from) and
        ``Metadata_Ensemble_PredictedIoU``; every object must have a row. They are metadata, not
        ``Nuclei_`` features: how an object was segmented is not a phenotype to normalise and profile
        (and a text column among the features stops ``pycytominer.aggregate``).
    compartments : dict, optional
        ``{"Cells": store, "Cytoplasm": store}``: label stores whose objects have the nuclei's labels (a cell
        per nucleus). Their ``Cells_*`` / ``Cytoplasm_*`` columns join each nucleus's row (NaN where a
        nucleus has none, e.g. an empty cytoplasm), with ``Cells_Parent_Nuclei`` and
        ``Nuclei_Children_Cells_Count``.
    block_size : int, optional
        A field larger than this is measured block by block (:func:`measure_field_blocks`: the same rows,
        the objects of ``threads`` blocks in memory at a time); None: every field whole.
    threads : int
        Blocks measured at once (:func:`measure_field_blocks`; the table does not depend on it).

    Returns
    -------
    pandas.DataFrame
        ``Metadata_*``, ``Metadata_Site`` (the field) and the :func:`measure_field` columns.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from plateseg.io.ngff import write_well_image, write_well_labels
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> lab = np.zeros((8, 8), np.uint32); lab[2:4, 2:4] = 1
    >>> _ = write_well_image(d / "image.zarr", {1: np.ones((1, 8, 8), np.uint16)}, ["DNA"], 8, 1.0)
    >>> _ = write_well_labels(d / "labels.zarr", {1: lab}, tile_size=8)
    >>> picks = pd.DataFrame({"field": [1], "label": [1], "engine": ["unet"], "predicted_iou": [0.8]})
    >>> measure_well(d / "image.zarr", d / "labels.zarr", {"Metadata_Well": "A01"}, picks)[
    ...     ["Metadata_Well", "Metadata_ObjectNumber", "Metadata_Ensemble_Source", "Metadata_Ensemble_PredictedIoU"]
    ... ].values.tolist()
    [['A01', 1, 'unet', 0.8]]
    >>> "Metadata_Ensemble_Source" in measure_well(d / "image.zarr", d / "labels.zarr", {}).columns
    False
    """
    from plateseg.io.ngff import channel_names, list_fields, open_field, open_labels

    names = channel_names(image_store)
    tables = []
    for field in list_fields(image_store):
        image = open_field(image_store, field)
        if block_size is None or max(image.shape[-2:]) <= int(block_size):
            image = image[...]

        def measured(store, compartment=COMPARTMENT):
            if isinstance(image, np.ndarray):
                return measure_field(open_labels(store, field)[...], image, names, compartment)
            return measure_field_blocks(open_labels(store, field), image, names, compartment, int(block_size),
                                        threads)

        df = measured(label_store)
        for compartment, store in (compartments or {}).items():
            other = measured(store, compartment)
            if compartment == "Cells":
                df["Nuclei_Children_Cells_Count"] = df["Metadata_ObjectNumber"].isin(other["Metadata_ObjectNumber"]).astype(np.int64)
                other.insert(1, "Cells_Parent_Nuclei", other["Metadata_ObjectNumber"].astype(np.int64))
            df = df.merge(other, on="Metadata_ObjectNumber", how="left")
        df.insert(0, "Metadata_Site", np.int64(field))
        tables.append(df)
    out = pd.concat(tables, ignore_index=True)
    for i, (k, v) in enumerate(metadata.items()):
        out.insert(i, k, v)
    if picks is not None:
        key = pd.MultiIndex.from_frame(out[["Metadata_Site", "Metadata_ObjectNumber"]].astype(np.int64))
        p = picks.set_index([picks["field"].astype(np.int64), picks["label"].astype(np.int64)])
        missing = ~key.isin(p.index)
        if missing.any():
            raise ValueError(f"{label_store}: {int(missing.sum())} object(s) without a row in the picks table")
        out.insert(len(metadata) + 2, "Metadata_Ensemble_Source", p["engine"].reindex(key).to_numpy())
        out.insert(len(metadata) + 3, "Metadata_Ensemble_PredictedIoU", p["predicted_iou"].reindex(key).to_numpy(np.float64))
    return out
