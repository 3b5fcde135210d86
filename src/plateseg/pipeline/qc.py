"""The quality of one well of a finished run, per field (``plateseg qc``, and the report's well pictures).

It reads what the run wrote: the HCS plate's fields and final labels (``plate.zarr``), the per-object table
(engine and predicted IoU of each nucleus for the ensemble), the scale record and the ingest's pixel QC.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["well_qc", "well_thumbnail", "model_curves"]

log = logging.getLogger(__name__)

# pictures of a field are drawn from a pyramid level of at most this many pixels a side
OVERLAY_PIXELS = 2048


def _well_files(results, plate: str, well: str) -> dict:
    from plateseg.io.hcs import well_path
    from plateseg.io.naming import normalize_well

    well, row, column = normalize_well(well)
    base = Path(results) / plate
    files = {"hcs": base / "plate.zarr" / well_path(row, column), "objects": base / well / "objects.parquet",
             "scale": base / well / "scale.json", "image": base / well / "image.zarr"}
    for key in ("hcs", "objects", "image"):
        if not files[key].exists():
            raise FileNotFoundError(f"{files[key]} does not exist: is {plate} {well} a well of a finished run in "
                                    f"{results}?")
    return {**files, "well": well}


def well_qc(results, plate: str, well: str, figure=None) -> pd.DataFrame:
    """One row per field of a well: nuclei, pixel QC flags, seam QC, estimated diameter and zoom, ensemble picks.

    Parameters
    ----------
    results : path-like
        The run's ``results`` folder.
    plate, well : str
        The well (``B03``, ``b3`` ...).
    figure : path-like, optional
        A PNG of every field with its final contours, coloured by engine
        (:func:`plateseg.measure.qc.contour_overlay`).

    Returns
    -------
    pandas.DataFrame
        ``Metadata_Plate, Metadata_Well, Metadata_Site, Count_Nuclei, QC_EmptyChannels, QC_SaturatedChannels,
        QC_Blocks, QC_NucleiAcrossSeams, QC_NucleiLargerThanHalo`` (the field's share of the per-well seam QC
        columns, :func:`plateseg.measure.summarize.seam_qc`; NaN for labels not made block by block),
        ``NucleusDiameter, Zoom`` and, for the ensemble, ``Ensemble_FractionUNet, Ensemble_MeanPredictedIoU``.
    """
    import zarr

    from plateseg.measure.summarize import seam_qc

    f = _well_files(results, plate, well)
    objects = pd.read_parquet(f["objects"])
    qc = dict(zarr.open_group(str(f["image"]), mode="r").attrs).get("plateseg_qc", {})
    scales = json.loads(f["scale"].read_text())["fields"] if f["scale"].exists() else {}
    hcs = zarr.open_group(str(f["hcs"]), mode="r")
    fields = [int(im["path"]) for im in hcs.attrs["ome"]["well"]["images"]]
    rows, panels = [], []
    for field in fields:
        obj = objects[objects["Metadata_Site"] == field]
        row = {"Metadata_Plate": plate, "Metadata_Well": f["well"], "Metadata_Site": field, "Count_Nuclei": len(obj)}
        for flag in ("empty", "saturated"):
            row[f"QC_{flag.capitalize()}Channels"] = ",".join(str(c) for fl, c in qc.get(flag, []) if int(fl) == field)
        blocks = hcs[f"{field}/labels/nuclei"].attrs.get("plateseg", {}).get("blocks")
        row.update({c.removeprefix("Metadata_"): v for c, v in seam_qc(None if blocks is None else {field: blocks}).items()})
        entry = scales.get(str(field), {})
        row["NucleusDiameter"], row["Zoom"] = entry.get("diameter"), entry.get("factor")
        if "Metadata_Ensemble_Source" in obj.columns:
            row["Ensemble_FractionUNet"] = float((obj["Metadata_Ensemble_Source"] == "unet").mean()) if len(obj) else np.nan
            row["Ensemble_MeanPredictedIoU"] = float(obj["Metadata_Ensemble_PredictedIoU"].mean()) if len(obj) else np.nan
        rows.append(row)
        if figure is not None:
            panels.append((f"field {field}: {len(obj)} nuclei", _overlay(hcs, field, obj)))
    if figure is not None:
        from plateseg.measure.qc import overlay_figure

        overlay_figure(panels, figure, f"{plate} {f['well']}", legend="Metadata_Ensemble_Source" in objects.columns)
        log.info("wrote %s", figure)
    return pd.DataFrame(rows)


def _overlay(hcs, field: int, objects: pd.DataFrame) -> np.ndarray:
    from plateseg.measure.qc import contour_overlay

    # the finest pyramid level of at most OVERLAY_PIXELS a side (a whole slide is drawn from a coarser level)
    level = next((k for k in range(len(hcs[str(field)].attrs["ome"]["multiscales"][0]["datasets"]))
                  if max(hcs[f"{field}/{k}"].shape[-2:]) <= OVERLAY_PIXELS), None)
    level = len(hcs[str(field)].attrs["ome"]["multiscales"][0]["datasets"]) - 1 if level is None else level
    labels = hcs[f"{field}/labels/nuclei/{level}"][...]
    plane = hcs[f"{field}/{level}"][0]
    return contour_overlay(plane, labels, _engine_of_objects(objects))


def _engine_of_objects(objects: pd.DataFrame) -> dict | None:
    """Object number -> the engine that drew it (the ensemble's ``Metadata_Ensemble_Source``), None without one."""
    if "Metadata_Ensemble_Source" not in objects.columns:
        return None
    return dict(zip(objects["Metadata_ObjectNumber"].astype(int), objects["Metadata_Ensemble_Source"]))


def well_thumbnail(image, labels, objects, out, title: str) -> None:
    """The report's picture of a well (rule measure): its first field with the final contours coloured by the
    engine that drew them (:func:`plateseg.measure.qc.contour_overlay`), every ``k``-th pixel of the well image
    store's first channel and of the final labels, ``k`` the least giving at most ``OVERLAY_PIXELS`` a side.

    Parameters
    ----------
    image, labels : path-like
        The well image store and its final label store.
    objects : pandas.DataFrame or path-like
        The well's per-object table.
    out : path-like
        The PNG.
    title : str
    """
    from plateseg.io.ngff import list_fields, open_field, open_labels
    from plateseg.measure.qc import contour_overlay, overlay_figure

    table = objects if isinstance(objects, pd.DataFrame) else pd.read_parquet(objects)
    fields = list_fields(image)
    field, pixels = fields[0], open_field(image, fields[0])
    step = -(-max(pixels.shape[-2:]) // OVERLAY_PIXELS)
    plane = np.asarray(pixels[0, ::step, ::step])
    mask = np.asarray(open_labels(labels, field)[::step, ::step])
    obj = table[table["Metadata_Site"] == field]
    overlay_figure([(f"field {field} of {len(fields)}: {len(obj)} nuclei",
                     contour_overlay(plane, mask, _engine_of_objects(obj)))],
                   out, title, legend="Metadata_Ensemble_Source" in table.columns)
    log.info("wrote %s (%d nuclei of field %d)", out, len(obj), field)


def model_curves(checkpoints: dict, out) -> None:
    """Rule training_curves: the training curves of the engines' checkpoints (their recorded history)."""
    import importlib

    from plateseg.measure.qc import training_curves

    histories = {}
    for engine, path in checkpoints.items():
        _, meta = importlib.import_module(f"plateseg.engines.{engine}").load_checkpoint(path, "cpu")
        name = f"{engine} ({Path(path).parent.name}/{Path(path).name})"
        histories[name] = meta.get("history", [])
        log.info("%s: %d epochs recorded in %s", engine, len(histories[name]), path)
    training_curves(histories, out)
