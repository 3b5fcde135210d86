"""What rule estimate_scale does for one well: per field the nucleus diameter and the zoom to the model's scale.

``segmentation.rescale`` chooses: ``auto`` measures each field's nucleus diameter near its centre with the
engine at the zooms :data:`PROBE_ZOOMS` (each probe the central 512 / zoom px zoomed to about 512 px): the
diameter at the zoom where the engine is most confident (a U-Net trained on 20-px nuclei cuts 130-px ones into
fragments of uncertain centres at zoom 1, and finds them whole and sure at zoom 0.25); fields whose nuclei the
model does not cover are zoomed (:func:`plateseg.engines.scale.scale_factor`).
A model that records its pixel size is instead zoomed by the ratio of the plate's pixel size to it; a number is
one zoom for every field; ``none`` never rescales. The record (``scale.json``) is read by both engines'
inference (:func:`plateseg.engines.scale.read_scales`).
"""
from __future__ import annotations

import json
import logging

import numpy as np

from plateseg.io.files import atomic_path

__all__ = ["PROBE_ZOOMS", "PROBE_UNET", "PROBE_MASKRCNN", "estimate_well_scale"]

log = logging.getLogger(__name__)


PROBE_ZOOMS = (2.0, 1.0, 0.5, 0.25)
# the probes' settings (U-Net: foreground threshold and centre peaks; Mask R-CNN: detection), fixed (those chosen
# with the shipped set) so that tuning watershed.* or maskrcnn.* never changes the zoom and so never reruns inference
PROBE_UNET = {"fg_threshold": 0.7, "peak_threshold": 0.3, "peak_min_distance": 5}
PROBE_MASKRCNN = {"score_threshold": 0.9, "mask_threshold": 0.5, "min_area": 30}


def _probe(engine, model, meta, arr, channel, crop, settings, tile_size, halo, batch_size, zoom):
    """``(nucleus diameter in field pixels or None, confidence)`` of the central ``crop / zoom`` pixels of field
    ``arr`` zoomed by ``zoom`` (so every probe sees about ``crop`` x ``crop`` pixels, and many nuclei when they
    are large).

    U-Net: the nuclei are the peaks of the centre heatmap within the foreground, the diameter that of a disc of
    the foreground area per nucleus, the confidence the mean peak height. Mask R-CNN: the median equivalent
    diameter of its instances, the confidence their mean score. The confidence is highest at the zoom where the
    nuclei look like the training ones. Fewer than 5 nuclei: no estimate. (No watershed: the scale, and so
    inference, does not depend on the watershed's code or settings.)
    """
    from plateseg.engines.scale import median_diameter, zoom_image

    h, w = arr.shape[-2:]
    size = int(np.ceil(crop / zoom))
    y0, x0 = max(0, (h - size) // 2), max(0, (w - size) // 2)
    window = np.asarray(arr[channel:channel + 1, y0:y0 + size, x0:x0 + size], np.float32)
    img = window if zoom == 1.0 else zoom_image(window, zoom)
    if min(img.shape[-2:]) < 32:
        return None, 0.0
    if engine == "unet":
        from skimage.feature import peak_local_max

        from plateseg.engines.unet import predict_maps

        maps = predict_maps(model, meta, img, tile_size, halo, batch_size, channels=[0])
        fg = maps[0] > settings["fg_threshold"]
        peaks = peak_local_max(maps[2], min_distance=settings["peak_min_distance"],
                               threshold_abs=settings["peak_threshold"], labels=fg.astype(np.int32),
                               exclude_border=False)
        if len(peaks) < 5:
            return None, 0.0
        d = 2.0 * np.sqrt(fg.sum() / len(peaks) / np.pi)
        return float(d / zoom), float(maps[2][tuple(peaks.T)].mean())
    from plateseg.engines.maskrcnn import predict_instances

    labels, table = predict_instances(model, meta, img, tile_size, halo, batch_size, channels=[0], **settings)
    d = median_diameter(labels)
    return (None, 0.0) if d is None else (d / zoom, float(table["score"].mean()))


def estimate_well_scale(image, out, rescale="auto", checkpoint=None, engine: str = "unet", channel: int = 0,
                        tile_size: int = 256, halo: int = 64, batch_size: int = 4, pixel_size: float | None = None,
                        threads: int | None = None, crop: int = 512) -> dict:
    """Rule estimate_scale: the zoom of every field of a well before inference, written as JSON to ``out``.

    Parameters
    ----------
    image : path-like
        The well image store.
    out : path-like
        The record: ``{"rescale", "model", "fields": {field: {"diameter", "factor", "source"}}}``.
    rescale : "auto", "none" or float
        See the module docstring.
    checkpoint : path-like, optional
        The measuring engine's checkpoint (needed for ``auto``).
    engine : {"unet", "maskrcnn"}
        The engine of the probes (:data:`PROBE_UNET` or :data:`PROBE_MASKRCNN`).
    channel : int
        The nuclear channel.
    tile_size, halo, batch_size : int
        Tiling of the first pass.
    pixel_size : float, optional
        The plate's micrometres per pixel (used when the model records its own).
    threads : int, optional
        torch CPU threads.
    crop : int
        Edge of what each probe sees: the central ``crop / zoom`` pixels of the field, zoomed.

    Returns
    -------
    dict
        The record.
    """
    from plateseg.io.ngff import list_fields, open_field

    fields = list_fields(image)
    record = {"rescale": rescale, "model": None, "fields": {}}
    if rescale == "none" or not isinstance(rescale, str):
        from plateseg.engines.scale import field_zoom

        factor, source = field_zoom(rescale)
        for f in fields:
            record["fields"][str(f)] = {"diameter": None, "factor": factor, "source": source}
            log.info("field %d: zoom %.3f (segmentation.rescale: %s)", f, factor, rescale)
    else:
        import importlib

        from plateseg.engines.scale import field_zoom, model_scale
        from plateseg.pipeline.run import torch_device

        module = importlib.import_module(f"plateseg.engines.{engine}")
        model, meta = module.load_checkpoint(checkpoint, torch_device(threads))
        settings = dict(PROBE_UNET if engine == "unet" else PROBE_MASKRCNN)
        trained, model_px, covered = model_scale(meta)
        record["model"] = {"checkpoint": str(checkpoint), "engine": engine, "trained_diameters": trained, "covered_zoom": covered,
                           "pixel_size": model_px}
        if trained is None and model_px is None:
            log.warning("%s records neither the nucleus diameters nor the pixel size it was trained at: "
                        "no field is rescaled", checkpoint)
        for i, f in enumerate(fields, start=1):
            entry = {"diameter": None, "factor": 1.0, "source": "estimated"}
            if model_px is not None and pixel_size:
                factor, source = field_zoom(rescale, meta, pixel_size=pixel_size)
                entry.update(factor=factor, source=source)
            elif trained is not None:
                arr = open_field(image, f)
                probes = {z: _probe(engine, model, meta, arr, channel, crop, settings, tile_size, halo, batch_size, z)
                          for z in PROBE_ZOOMS}
                best = max(PROBE_ZOOMS, key=lambda z: (probes[z][1], z == 1.0))
                d = probes[best][0]
                entry.update(diameter=None if d is None else round(d, 2), factor=field_zoom(rescale, meta, d)[0],
                             probes={str(z): {"diameter": None if v[0] is None else round(v[0], 2),
                                              "confidence": round(v[1], 3)} for z, v in probes.items()})
            record["fields"][str(f)] = entry
            d = entry["diameter"]
            log.info("field %d (%d/%d): nucleus diameter %s (model trained on %s px, covers x%g-%g): %s", f, i,
                     len(fields), "unknown (too few nuclei)" if d is None else f"{d:.1f} px",
                     "?" if trained is None else f"{trained[0]:.1f}-{trained[1]:.1f}", covered[0], covered[1],
                     "not rescaled" if entry["factor"] == 1.0 else f"zoomed by {entry['factor']:.3f} ({entry['source']})")
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
    return record
