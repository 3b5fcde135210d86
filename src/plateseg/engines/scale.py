"""The scale an engine sees: a field's nucleus diameter, the zoom to the model's training scale, resizing back.

A model learns nuclei of the sizes it was trained on. Its checkpoint records them (:func:`diameter_record`):
the median nucleus diameter of its training objects (``nucleus_diameter``, pixels), the 5th-95th percentiles of
its training images' median diameters (``nucleus_diameter_range``), its pixel size when known (``pixel_size``),
and the zoom range of its scale augmentation (``params.scale_range``); together (:func:`model_scale`) they give
the diameters it covers. A field whose nuclei lie outside is zoomed by :func:`scale_factor` before inference,
window by window: the engines read the field in windows of the model's tile and halo in field pixels
(:func:`field_tiling`), zoom each window to the model's scale and resize the model's outputs back to the window
(:func:`zoomed_maps`, :func:`zoomed_masks`), so no zoomed copy of a whole field is ever made and every label
image, table and measurement stays in the field's own pixels. Pixel thresholds of the steps after inference
(minimum areas, peak distances) are in the model's pixels; :func:`scaled_watershed` converts them.

Examples
--------
>>> scale_factor(120.0, (10.0, 50.0), (0.6, 1.6))   # trained on 10-50 px, zoomed 0.6-1.6: covers 6-80 px
0.417
>>> scale_factor(60.0, (10.0, 50.0), (0.6, 1.6))    # covered: no rescaling
1.0
"""
from __future__ import annotations

import numpy as np

__all__ = ["DEFAULT_COVERED", "median_diameter", "diameter_record", "scale_factor", "model_scale", "field_zoom",
           "training_zooms", "zoom_annotated", "read_scales", "stored_scales", "zoom_image", "resize_maps",
           "resize_labels", "field_tiling", "zoomed_maps", "zoomed_masks", "scaled_watershed"]

# zoom range a model is taken to cover when its checkpoint records none (the engines' default augmentation)
DEFAULT_COVERED = (0.8, 1.25)


def median_diameter(labels, min_objects: int = 5) -> float | None:
    """Median equivalent diameter (pixels) of the objects of ``labels`` (a label image, or a list of them:
    all their objects); None with fewer than ``min_objects``.

    Examples
    --------
    >>> lab = np.zeros((40, 40), int)
    >>> for k in range(5): lab[2 + 7 * k: 6 + 7 * k, 2:6] = k + 1
    >>> round(median_diameter(lab), 2)
    4.51
    >>> median_diameter(lab[:10]) is None
    True
    """
    images = labels if isinstance(labels, (list, tuple)) else [labels]
    areas = np.concatenate([np.bincount(np.asarray(m).ravel().astype(np.int64))[1:] for m in images])
    areas = areas[areas > 0]
    if len(areas) < min_objects:
        return None
    return float(np.median(2.0 * np.sqrt(areas / np.pi)))


def diameter_record(masks) -> dict:
    """What a checkpoint records of its training nuclei' sizes (pixels): ``nucleus_diameter`` (median of
    all objects) and ``nucleus_diameter_range`` (5th and 95th percentile of the images' median diameters).
    Empty without objects.

    Examples
    --------
    >>> lab = np.zeros((40, 40), int)
    >>> for k in range(5): lab[2 + 7 * k: 6 + 7 * k, 2:6] = k + 1
    >>> diameter_record([lab, lab])
    {'nucleus_diameter': 4.51, 'nucleus_diameter_range': [4.51, 4.51]}
    """
    overall = median_diameter(list(masks), min_objects=1)
    if overall is None:
        return {}
    per_image = [d for d in (median_diameter(m, min_objects=1) for m in masks) if d is not None]
    lo, hi = np.percentile(per_image, [5, 95])
    return {"nucleus_diameter": round(overall, 2), "nucleus_diameter_range": [round(float(lo), 2), round(float(hi), 2)]}


def scale_factor(diameter: float | None, trained, covered=DEFAULT_COVERED) -> float:
    """The zoom (3 decimals) that brings nuclei of ``diameter`` into the ``trained`` diameter range, or 1.0.

    ``trained`` is ``(low, high)`` (or one diameter), the diameters the model was trained on; nuclei within
    ``(low * covered[0], high * covered[1])`` -- what the scale augmentation taught it -- are not rescaled
    (1.0); others are zoomed to ``low`` or ``high``, whichever is nearer. 1.0 when either is unknown.

    Examples
    --------
    >>> scale_factor(4.0, 16.0, covered=(0.6, 1.6))
    4.0
    >>> scale_factor(None, 16.0)
    1.0
    """
    if not diameter or trained is None:
        return 1.0
    low, high = (float(trained), float(trained)) if np.isscalar(trained) else (float(trained[0]), float(trained[1]))
    if low * covered[0] <= diameter <= high * covered[1]:
        return 1.0
    target = low if diameter < low else high
    return round(target / float(diameter), 3)


def model_scale(meta: dict) -> tuple:
    """``(trained diameter range or None, pixel size or None, covered zoom range)`` of a checkpoint's metadata.

    The range is ``nucleus_diameter_range``, else ``nucleus_diameter`` at both ends.

    Examples
    --------
    >>> model_scale({"nucleus_diameter": 15.9, "params": {"scale_range": [0.6, 1.6]}})
    ((15.9, 15.9), None, (0.6, 1.6))
    """
    params = meta.get("params") or {}
    covered = tuple(float(v) for v in params.get("scale_range") or DEFAULT_COVERED)
    trained = meta.get("nucleus_diameter_range")
    if trained is None and meta.get("nucleus_diameter") is not None:
        trained = (meta["nucleus_diameter"], meta["nucleus_diameter"])
    trained = None if trained is None else (float(trained[0]), float(trained[1]))
    pixel = meta.get("pixel_size")
    return trained, None if pixel is None else float(pixel), covered


def field_zoom(rescale, meta=None, diameter: float | None = None, pixel_size: float | None = None) -> tuple:
    """``(zoom, source)`` that inference gives a field (rule estimate_scale): ``rescale`` (config
    ``segmentation.rescale``) ``"none"``: 1.0; a number: that zoom; ``"auto"``: the ratio of ``pixel_size`` to the
    model's (``meta``) when both are known, else :func:`scale_factor` of the field's nucleus ``diameter`` against
    the model's trained diameters (:func:`model_scale`).

    Examples
    --------
    >>> meta = {"nucleus_diameter_range": [10.0, 48.0], "params": {"scale_range": [0.6, 1.6]}}
    >>> field_zoom("auto", meta, 120.0), field_zoom("auto", meta, 14.0), field_zoom(0.5), field_zoom("none")
    ((0.4, 'estimated'), (1.0, 'estimated'), (0.5, 'config'), (1.0, 'none'))
    >>> field_zoom("auto", {"pixel_size": 0.5}, 120.0, pixel_size=0.25)
    (0.5, 'pixel size')
    """
    if rescale == "none":
        return 1.0, "none"
    if not isinstance(rescale, str):
        return float(rescale), "config"
    trained, model_px, covered = model_scale(meta or {})
    if model_px is not None and pixel_size:
        return round(float(pixel_size) / model_px, 3), "pixel size"
    return scale_factor(diameter, trained, covered), "estimated"


def training_zooms(masks, meta, rescale="auto", pixel_size: float | None = None) -> list:
    """The zoom inference will give the field of each annotated image (:func:`field_zoom`, the image's
    nucleus diameter measured on its ``masks``) for the model of ``meta``: fine-tuning that model trains on
    the images at these zooms, the scale its inference will see them at (its scale augmentation then varies
    around it).

    Examples
    --------
    >>> lab = np.zeros((40, 40), int)
    >>> for k in range(5): lab[2 + 7 * k: 6 + 7 * k, 2:6] = k + 1
    >>> meta = {"nucleus_diameter_range": [10.0, 48.0], "params": {"scale_range": [0.6, 1.6]}}
    >>> training_zooms([lab, np.kron(lab, np.ones((4, 4), int))], meta)   # 4.5 px nuclei zoomed; 18 px not
    [2.216, 1.0]
    """
    return [field_zoom(rescale, meta, median_diameter(m), pixel_size)[0] for m in masks]


def zoom_annotated(images, masks, factors) -> tuple:
    """``(images, masks)`` of annotated images each zoomed by its factor (:func:`zoom_image` and
    :func:`resize_labels` to the zoomed size; a factor of 1.0 leaves the pair as it is).

    Examples
    --------
    >>> imgs, labs = zoom_annotated([np.ones((1, 10, 20))], [np.ones((10, 20), np.uint16)], [2.0])
    >>> imgs[0].shape, labs[0].shape, labs[0].dtype
    ((1, 20, 40), (20, 40), dtype('uint16'))
    """
    out_images, out_masks = [], []
    for image, mask, factor in zip(images, masks, factors):
        if factor == 1.0:
            out_images.append(image)
            out_masks.append(mask)
            continue
        img = np.asarray(image)
        zoomed = zoom_image(img if img.ndim == 3 else img[None], factor)
        out_images.append(zoomed)
        out_masks.append(resize_labels(mask, zoomed.shape[-2:]))
    return out_images, out_masks


def read_scales(path) -> dict:
    """Field -> zoom of a well's record (``scale.json`` of rule estimate_scale); empty for None.

    Examples
    --------
    >>> read_scales(None)
    {}
    """
    import json

    if path is None:
        return {}
    with open(path) as fh:
        record = json.load(fh)
    return {int(f): float(e["factor"]) for f, e in record["fields"].items()}


def stored_scales(store) -> dict:
    """``{str(field): zoom}`` an inference store (U-Net maps, Mask R-CNN labels) records in its attrs
    (``plateseg.scale``; empty for a store written without zooms)."""
    import zarr

    return dict(zarr.open_group(str(store), mode="r").attrs.get("plateseg", {}).get("scale") or {})


def zoom_image(image, factor: float) -> np.ndarray:
    """``(c, h, w)`` image zoomed by ``factor`` (linear interpolation, anti-aliased when shrinking), float32.

    Examples
    --------
    >>> zoom_image(np.ones((1, 10, 20)), 0.5).shape
    (1, 5, 10)
    """
    from skimage.transform import resize

    img = np.asarray(image, np.float32)
    shape = (img.shape[0],) + tuple(max(1, int(round(s * factor))) for s in img.shape[-2:])
    return resize(img, shape, order=1, anti_aliasing=factor < 1, preserve_range=True).astype(np.float32)


def resize_maps(maps, shape) -> np.ndarray:
    """``(n, h, w)`` probability maps resized to ``(n,) + shape`` (linear), float32.

    Examples
    --------
    >>> resize_maps(np.zeros((3, 5, 10)), (10, 20)).shape
    (3, 10, 20)
    """
    from skimage.transform import resize

    maps = np.asarray(maps, np.float32)
    return resize(maps, (maps.shape[0],) + tuple(shape), order=1, anti_aliasing=False,
                  preserve_range=True).astype(np.float32)


def resize_labels(labels, shape) -> np.ndarray:
    """A label image resized to ``shape`` by nearest neighbour (ids kept; tiny objects may vanish).

    Examples
    --------
    >>> resize_labels(np.array([[0, 7], [7, 7]], np.uint32), (4, 4))[0].tolist()
    [0, 0, 7, 7]
    """
    from skimage.transform import resize

    lab = np.asarray(labels)
    return resize(lab, tuple(shape), order=0, anti_aliasing=False, preserve_range=True).astype(lab.dtype)


def field_tiling(tile_size, halo, factor: float):
    """Tile core and halo in the field's pixels for a model that sees the field zoomed by ``factor``:
    ``tile_size`` and ``halo`` are the model's (its window and context stay the same in its own pixels).
    ``tile_size`` may be an int, a pair or None (one tile).

    Examples
    --------
    >>> field_tiling(256, 64, 0.5), field_tiling((256, 128), 32, 2.0), field_tiling(None, 32, 1.0)
    ((512, 128), ((128, 64), 16), (None, 32))
    """
    if factor == 1.0:
        return tile_size, halo

    def field(n):
        return max(1, int(round(int(n) / factor)))

    tiles = None if tile_size is None else (field(tile_size) if np.ndim(tile_size) == 0 else
                                            tuple(field(t) for t in tile_size))
    return tiles, field(halo)


def zoomed_maps(predict_fn, factor: float):
    """``predict_fn`` (a ``(n, c, H, W)`` batch of field windows -> ``(n, k, H, W)`` maps) run on the windows
    zoomed by ``factor`` (:func:`zoom_image`), its maps resized back to the windows (:func:`resize_maps`).

    Examples
    --------
    >>> fn = zoomed_maps(lambda b: b[:, :1] * 2, 0.5)
    >>> out = fn(np.ones((2, 1, 8, 12), np.float32))
    >>> out.shape, float(out.min()), float(out.max())
    ((2, 1, 8, 12), 2.0, 2.0)
    """
    if factor == 1.0:
        return predict_fn

    def fn(batch):
        batch = np.asarray(batch, np.float32)
        size = batch.shape[-2:]
        maps = np.asarray(predict_fn(np.stack([zoom_image(window, factor) for window in batch])))
        return np.stack([resize_maps(m, size) for m in maps])

    return fn


def _nearest_source(n_out: int, n_in: int) -> np.ndarray:
    """Source index of each of ``n_out`` samples resized by nearest neighbour from ``n_in`` (as :func:`resize_labels`)."""
    return np.minimum(((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.int64), n_in - 1)


def _unzoomed_box_masks(masks, zoomed_size, size):
    """:class:`~plateseg.tiling.instances.BoxMasks` of a window zoomed to ``zoomed_size``, resized back to ``size``
    by nearest neighbour box by box (a mask too small for the coarser grid vanishes)."""
    from plateseg.tiling.instances import BoxMasks

    src = [_nearest_source(n, z) for n, z in zip(size, zoomed_size)]
    boxes, crops = [], []
    for (y0, x0, y1, x1), crop in zip(np.asarray(masks.boxes).reshape(-1, 4), masks.crops):
        (r0, r1), (c0, c1) = (np.searchsorted(s, (a, b)) for s, a, b in zip(src, (y0, x0), (y1, x1)))
        if r1 > r0 and c1 > c0:
            boxes.append((r0, c0, r1, c1))
            crops.append(np.asarray(crop)[np.ix_(src[0][r0:r1] - y0, src[1][c0:c1] - x0)])
    return BoxMasks(np.asarray(boxes, np.int64).reshape(-1, 4), crops)


def zoomed_masks(detect_fn, factor: float):
    """``detect_fn`` (a list of ``(c, H, W)`` field windows -> per window ``(masks, scores)``, masks a bool
    ``(N, H, W)`` stack or a :class:`~plateseg.tiling.instances.BoxMasks`) run on the windows zoomed by
    ``factor``, its masks resized back to the windows by nearest neighbour.

    Examples
    --------
    >>> def detect(windows):
    ...     return [(w[:1] > 0.5, np.ones(1)) for w in windows]
    >>> img = np.zeros((1, 8, 8)); img[0, 2:6, 2:6] = 1
    >>> masks, scores = zoomed_masks(detect, 2.0)([img])[0]
    >>> masks.shape, int(masks.sum())
    ((1, 8, 8), 16)
    >>> from plateseg.tiling.instances import BoxMasks
    >>> boxed = lambda ws: [(BoxMasks(np.array([[4, 4, 12, 12]]), [np.ones((8, 8), bool)]), np.ones(1)) for w in ws]
    >>> masks, scores = zoomed_masks(boxed, 2.0)([img])[0]
    >>> masks.boxes.tolist(), masks.crops[0].shape
    ([[2, 2, 6, 6]], (4, 4))
    """
    if factor == 1.0:
        return detect_fn

    def fn(windows):
        windows = list(windows)
        zoomed = [zoom_image(window, factor) for window in windows]
        found = detect_fn(zoomed)
        out = []
        for (masks, scores), window, z in zip(found, windows, zoomed):
            size = np.asarray(window).shape[-2:]
            if hasattr(masks, "crops"):
                masks = _unzoomed_box_masks(masks, np.asarray(z).shape[-2:], size)
            elif len(masks):
                masks = resize_labels(np.asarray(masks).astype(np.uint8), (len(masks),) + tuple(size)).astype(bool)
            else:
                masks = np.zeros((0,) + tuple(size), bool)
            out.append((masks, scores))
        return out

    return fn


def scaled_watershed(settings: dict, factor: float) -> dict:
    """Watershed settings in the model's pixels (``min_area``, ``peak_min_distance``) for maps of a field
    zoomed by ``factor`` before inference and resized back: areas divide by ``factor**2``, distances by
    ``factor`` (at least 1 pixel).

    Examples
    --------
    >>> scaled_watershed({"mode": "centre", "min_area": 20, "peak_min_distance": 5}, 0.5)
    {'mode': 'centre', 'min_area': 80, 'peak_min_distance': 10}
    """
    out = dict(settings)
    if factor == 1.0:
        return out
    if "min_area" in out:
        out["min_area"] = max(1, int(round(out["min_area"] / factor ** 2)))
    if "peak_min_distance" in out:
        out["peak_min_distance"] = max(1, int(round(out["peak_min_distance"] / factor)))
    return out
