"""What rule watershed does for one well: instance labels from the U-Net maps (markers from the settings;
with markers ``points`` the centroids of the well's Mask R-CNN instances, seed 003)."""
from __future__ import annotations

import numpy as np

from plateseg.io.files import read_table

__all__ = ["watershed_well"]


def watershed_well(maps, out, settings: dict, points=None, tile_size: int = 256, pixel_size: float = 1.0,
                   block_size: int | None = None, halo: int = 64, threads: int = 1):
    """Rule watershed: instance labels from a well's U-Net maps.

    Parameters
    ----------
    maps : path-like
        The well's U-Net maps store.
    out : path-like
        The label store.
    settings : dict
        Keyword arguments of :func:`plateseg.segment.watershed.instances_from_maps` (``mode`` the
        markers), pixel sizes in the model's pixels: for a field the maps store records as zoomed before
        inference (attrs ``scale``) they are converted (:func:`plateseg.engines.scale.scaled_watershed`).
    points : path-like, optional
        With mode ``points``: the well's Mask R-CNN instance table, whose centroids are the
        markers (seed 003).
    tile_size : int
    pixel_size : float
        Chunk edge and micrometres per pixel of the label store.
    block_size, halo : int, optional
        A field larger than ``block_size`` is labelled block by block with ``halo`` of context
        (:func:`plateseg.pipeline.labelling.segment_well`); None: every field whole.
    threads : int
        Blocks labelled at once (the rule's threads; the labels do not depend on it).

    Examples
    --------
    watershed_well("results/P/A01/unet.zarr", "results/P/A01/unet_labels.zarr",
                       {"mode": "centre"})
    """
    from plateseg.engines.scale import scaled_watershed, stored_scales
    from plateseg.pipeline.labelling import segment_well
    from plateseg.segment.watershed import instances_from_maps

    settings = dict(settings)
    scales = stored_scales(maps)
    by_field = None
    if settings["mode"] == "points":
        table = read_table(points)
        by_field = {f: t[["centroid_y", "centroid_x"]].to_numpy() for f, t in table.groupby("field")}

    def segmenter(field_maps, field, blockwise):
        pts = None if by_field is None else by_field.get(field, np.zeros((0, 2)))
        field_settings = scaled_watershed(settings, float(scales.get(str(field), 1.0)))

        def label(window, origin):
            window = np.asarray(window, np.float32)
            local = None
            if pts is not None:  # the markers inside this window, in its coordinates
                local = np.asarray(pts, float) - np.asarray(origin, float)
                inside = ((local >= 0) & (local < np.array(window.shape[-2:]))).all(axis=1)
                local = local[inside]
            return instances_from_maps(window, points=local, **field_settings)

        return label

    return segment_well(maps, out, segmenter, tile_size=tile_size, pixel_size=pixel_size,
                        attrs={"method": "unet", "watershed": settings}, describe=f"markers {settings['mode']}",
                        block_size=block_size, halo=halo, threads=threads)
