"""What rule segment_classical does for one well: the classical baseline's label store.

(Apart from :mod:`plateseg.pipeline.watershed`, so that each rule's rerun trigger hashes only the
code it runs.)
"""
from __future__ import annotations

__all__ = ["classical_well"]


def classical_well(image, out, channel: int, settings: dict, tile_size: int = 256, pixel_size: float = 1.0,
                   block_size: int | None = None, halo: int = 64, threads: int = 1):
    """Rule segment_classical: classical baseline labels for every field of a well.

    Parameters
    ----------
    image : path-like
        The well image store.
    out : path-like
        The label store.
    channel : int
        The nuclear channel.
    settings : dict
        Keyword arguments of :func:`plateseg.segment.classical.segment_classical`.
    tile_size : int
    pixel_size : float
        Chunk edge and micrometres per pixel of the label store.
    block_size, halo : int, optional
        A field larger than ``block_size`` is labelled block by block with ``halo`` of context, at the
        whole field's threshold (:func:`plateseg.segment.threshold.field_threshold`); None: every field whole.
    threads : int
        Blocks thresholded and labelled at once (the rule's threads; the labels do not depend on it).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> from plateseg.io.ngff import read_labels, write_well_image
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> img = np.zeros((1, 32, 32), np.uint16); img[0, 8:16, 8:16] = 1000
    >>> _ = write_well_image(d / "image.zarr", {1: img}, ["DNA"], 16, 1.0)
    >>> _ = classical_well(d / "image.zarr", d / "labels.zarr", 0, {}, tile_size=16)
    >>> int(read_labels(d / "labels.zarr", 1).max())
    1
    """
    from functools import partial

    import numpy as np

    from plateseg.pipeline.labelling import segment_well
    from plateseg.segment.classical import segment_classical, smoothed
    from plateseg.segment.threshold import field_threshold

    def segmenter(img, field, blockwise):
        kw = dict(settings)
        if blockwise:  # the whole field's threshold, so that every block cuts at the same level
            transform = partial(smoothed, sigma=kw.get("sigma", 1.0), background_size=kw.get("background_size", 0))
            kw["threshold"] = field_threshold(lambda s: img[(channel,) + tuple(s)], img.shape[-2:],
                                              kw.get("threshold", "li"), transform, block_size, halo,
                                              threads=threads)
        return lambda window, origin: segment_classical(np.asarray(window[channel]), **kw)

    return segment_well(image, out, segmenter, tile_size=tile_size, pixel_size=pixel_size,
                        attrs={"method": "classical", "settings": dict(settings)}, block_size=block_size, halo=halo,
                        threads=threads)
