"""One image through a well's steps, outside a run (``plateseg segment``): the rules' own functions on
stores in a scratch folder, so an image is segmented exactly as a one-field well of a run with that config.

:func:`default_config` is the workflow's embedded ``config.yaml`` with the schema's defaults and a model
set's settings (as a run that uses the set gets them); :func:`segment_image` runs the steps.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["REPO", "default_config", "segment_image"]

log = logging.getLogger(__name__)

#: the checkout that holds the workflow, its config and the shipped model sets
REPO = Path(__file__).resolve().parents[3]


def default_config(method: str = "ensemble", model_set: str | None = "dsb2018-fluo", models: dict | None = None,
                   rescale="auto", repo=REPO) -> dict:
    """The settings of a run with the embedded config, ``segmentation.method`` and pretrained models.

    Parameters
    ----------
    method : {"ensemble", "unet", "maskrcnn", "classical"}
    model_set : str, optional
        A shipped set's name or a folder with its files (config ``models.set``).
    models : dict, optional
        Explicit ``unet`` / ``maskrcnn`` / ``picker`` files (config ``models.<key>``), over the set's.
    rescale : "auto", "none" or float
        Config ``segmentation.rescale``.

    Examples
    --------
    >>> cfg = default_config("unet")
    >>> cfg["segmentation"]["method"], cfg["models"]["source"], cfg["evaluation"]["groundtruth"]
    ('unet', 'pretrained', None)
    """
    import yaml
    from snakemake.utils import validate

    from plateseg.config.models import with_set_settings

    config = yaml.safe_load((Path(repo) / "config.yaml").read_text())
    config["segmentation"] = {**config.get("segmentation", {}), "method": method, "rescale": rescale}
    config["models"] = {**config.get("models", {}), "source": "pretrained", "set": model_set, **(models or {})}
    config["evaluation"] = {**config.get("evaluation", {}), "groundtruth": None, "compare": []}
    config = with_set_settings(config, repo)
    validate(config, str(Path(repo) / "workflow" / "schemas" / "config.schema.yaml"), set_default=True)
    return config


def segment_image(image: np.ndarray, config: dict, channels: list[str] | None = None, nuclear: int = 0,
                  workdir=None, threads: int | None = None, repo=REPO) -> tuple[np.ndarray, pd.DataFrame | None]:
    """Segment one ``(C, H, W)`` (or ``(H, W)``) image as a one-field well with ``config``.

    Parameters
    ----------
    image : array
        Raw intensities.
    config : dict
        :func:`default_config` (or a run's config with the schema's defaults).
    channels : list of str, optional
        Channel names (default ``ch1``, ``ch2``, ...).
    nuclear : int
        Index of the nuclear channel.
    workdir : path-like, optional
        Where the intermediate stores go (default: a temporary folder, removed after).
    threads : int, optional
        torch CPU threads.

    Returns
    -------
    labels : (H, W) uint32 array
        The final labels of ``segmentation.method``.
    picks : pandas.DataFrame or None
        For the ensemble: the engine and predicted IoU of every label.
    """
    from plateseg.config.checks import engines_used
    from plateseg.config.models import model_files
    from plateseg.config.params import classical_settings, maskrcnn_detection, watershed_settings
    from plateseg.io.files import read_table
    from plateseg.io.ngff import read_labels, write_well_image
    from plateseg.pipeline.classical import classical_well
    from plateseg.pipeline.infer import infer_well
    from plateseg.pipeline.pick import pick_well
    from plateseg.pipeline.scale import estimate_well_scale
    from plateseg.pipeline.watershed import watershed_well

    image = np.asarray(image)
    image = image[None] if image.ndim == 2 else image
    if image.ndim != 3:
        raise ValueError(f"expected a (C, H, W) or (H, W) image, got shape {image.shape}")
    channels = list(channels or [f"ch{i + 1}" for i in range(image.shape[0])])
    method = config["segmentation"]["method"]
    tile, halo, batch = config["tiling"]["tile_size"], config["tiling"]["halo"], config["inference"]["batch_size"]
    px = config["pixel_size"]
    files = model_files(config, repo)
    engines = [e for e in ("unet", "maskrcnn") if e in engines_used(config)]  # U-Net first: it measures the scale
    missing = [e for e in engines + (["picker"] if method == "ensemble" else []) if not files[e]]
    if missing:
        raise ValueError(f"segmentation.method {method} needs the {', '.join(missing)} model(s): "
                         "give a model set (--set) or the files")
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        d = Path(tmp)
        write_well_image(d / "image.zarr", {1: image}, channels, tile, px or 1.0)
        if method == "classical":
            classical_well(d / "image.zarr", d / "final.zarr", nuclear, classical_settings(config), tile, px or 1.0)
            return read_labels(d / "final.zarr", 1), None
        estimate_well_scale(d / "image.zarr", d / "scale.json", config["segmentation"]["rescale"],
                            checkpoint=files[engines[0]], engine=engines[0], channel=nuclear, tile_size=tile, halo=halo,
                            batch_size=batch, pixel_size=px, threads=threads)
        common = dict(channel=nuclear, threads=threads, scale=d / "scale.json", tile_size=tile, halo=halo,
                      batch_size=batch, pixel_size=px)
        if "maskrcnn" in engines:
            infer_well("maskrcnn", d / "image.zarr", files["maskrcnn"], d / "maskrcnn.zarr", d / "maskrcnn.parquet",
                       settings=maskrcnn_detection(config), **common)
        if "unet" in engines:
            infer_well("unet", d / "image.zarr", files["unet"], d / "unet.zarr", **common)
            points = d / "maskrcnn.parquet" if config["watershed"]["markers"] == "points" else None
            watershed_well(d / "unet.zarr", d / "unet_labels.zarr", watershed_settings(config), points=points,
                           tile_size=tile, pixel_size=px)
        if method == "ensemble":
            pick_well(d / "unet.zarr", d / "unet_labels.zarr", d / "maskrcnn.zarr", d / "maskrcnn.parquet",
                      files["picker"], d / "final.zarr", d / "picks.parquet", min_iou=config["ensemble"]["min_iou"],
                      nms_iou=config["ensemble"]["nms_iou"], tile_size=tile, pixel_size=px)
            return read_labels(d / "final.zarr", 1), read_table(d / "picks.parquet")
        return read_labels(d / {"unet": "unet_labels.zarr", "maskrcnn": "maskrcnn.zarr"}[method], 1), None
