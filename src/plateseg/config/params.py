"""Config -> settings: the one translation of a validated config into the settings of every step.

Each function takes the config dict (validated against ``workflow/schemas/config.schema.yaml``, so every key
has its default) and returns a plain dict, canonical (every dict's keys sorted), ready to be a rule's
``params:`` value (Snakemake compares params by their repr, so the order of config keys must not trigger
reruns) and to be turned into a settings object by :func:`coerce_params` (``UNetParams.coerce(settings)``,
``MaskRCNNParams.coerce(settings)``, ``PickerParams.coerce(settings)``) or passed as keyword arguments
(:func:`watershed_settings`, :func:`classical_settings`, :func:`maskrcnn_detection`).

Nothing here imports torch or an engine: the workflow calls these functions when it loads.
"""
from __future__ import annotations

import dataclasses
import logging

__all__ = [
    "FINETUNE_DEFAULTS",
    "MASKRCNN_INFERENCE_KEYS",
    "canonical",
    "classical_settings",
    "coerce_params",
    "maskrcnn_detection",
    "maskrcnn_settings",
    "picker_settings",
    "unet_settings",
    "unet_validation_watershed",
    "watershed_settings",
]

log = logging.getLogger(__name__)

# Mask R-CNN config keys that are inference settings, not MaskRCNNParams fields (min_area of the config is the
# minimum predicted mask area; MaskRCNNParams.min_area is the minimum target area, config target_min_area)
MASKRCNN_INFERENCE_KEYS = ("score_threshold", "mask_threshold", "min_area")


# How models.source finetune trains each engine unless the run's config sets the key (config.models.with_set_settings
# puts these under the config), from the set's weights (bench/finetune_dsb.py uses the same). U-Net: 20 epochs x 40
# steps of 8 crops at lr 1e-3; Mask R-CNN: 4 epochs x 25 steps of 4 crops at lr 1e-3. Chosen as rule choose_model
# judges fine-tuning (grouped folds of 20 annotated images) on a microscope the set never saw: bench/finetune_schedule.py,
# section "Fine-tuning schedule (models.source finetune defaults)" of bench/RESULTS.md; the former U-Net 7 epochs at
# lr 1e-4 barely moved the model there. Where fine-tuning does not help (images like the set's training data), rule
# choose_model keeps the set's model. The crops and augmentation are the checkpoint's
# (plateseg.engines.base.finetune_params), not the config's.
FINETUNE_DEFAULTS = {
    "unet": {"epochs": 20, "samples_per_epoch": 320, "batch_size": 8, "lr": 1e-3, "warmup_steps": 10},
    "maskrcnn": {"epochs": 4, "samples_per_epoch": 100, "batch_size": 4, "lr": 1e-3, "warmup_steps": 10},
}


def canonical(value):
    """``value`` with every dict's keys sorted (recursively, also inside lists).

    Examples
    --------
    >>> canonical({"b": 1, "a": [{"d": 2, "c": 3}]})
    {'a': [{'c': 3, 'd': 2}], 'b': 1}
    """
    if isinstance(value, dict):
        return {k: canonical(value[k]) for k in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    return value


def coerce_params(cls, params, what: str):
    """A settings dataclass ``cls`` from None (defaults), an instance (copied) or a dict.

    Lists become tuples (nested lists too, as YAML and JSON give them); a key that is not a field
    is a TypeError naming ``what``; the result's ``validate()`` runs if the class has one.

    Examples
    --------
    >>> import dataclasses
    >>> @dataclasses.dataclass
    ... class P:
    ...     sizes: tuple = (1,)
    >>> coerce_params(P, {"sizes": [[2, 3], 4]}, "example").sizes
    ((2, 3), 4)
    >>> coerce_params(P, {"size": 1}, "example")
    Traceback (most recent call last):
    ...
    TypeError: unknown example parameters: ['size']
    """
    def tuples(v):
        return tuple(tuples(a) for a in v) if isinstance(v, list) else v

    if params is None:
        p = cls()
    elif isinstance(params, cls):
        p = dataclasses.replace(params)
    else:
        params = dict(params)
        unknown = set(params) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"unknown {what} parameters: {sorted(unknown)}")
        p = cls(**{k: tuples(v) for k, v in params.items()})
    if hasattr(p, "validate"):
        p.validate()
    return p


def _training(config: dict, section: dict, fold) -> dict:
    """Settings every engine shares: the nuclear channel of the annotated images, seed, pixel size; fold
    models (``fold`` not ``"all"``) are validated on their held-out fold every ``val_every`` epochs, the model
    on all data is not validated (so ``val_every`` does not retrain it)."""
    out = {"channels": [0], "seed": config["training"]["seed"], "pixel_size": config["training"]["pixel_size"]}
    if str(fold) != "all":
        out["val_every"] = section["val_every"]
    return out


def unet_settings(config: dict, fold="all") -> dict:
    """plateseg.engines.unet.UNetParams fields of the U-Net of ``fold`` (``"all"`` or a fold number), from
    config ``unet.*``, ``training.seed`` and ``training.pixel_size``; a fold model is validated with the
    configured watershed (``val_watershed``, :func:`unet_validation_watershed`) and tiling (``val_tile_size``,
    ``val_halo``).

    Examples
    --------
    >>> cfg = {"unet": {"epochs": 2, "val_every": 1}, "training": {"seed": 0, "pixel_size": None},
    ...        "tiling": {"tile_size": 256, "halo": 32}, "watershed": {"markers": "centre", "min_area": 30}}
    >>> unet_settings(cfg)
    {'channels': [0], 'epochs': 2, 'pixel_size': None, 'seed': 0}
    >>> unet_settings(cfg, fold=1)["val_watershed"]
    {'min_area': 30, 'mode': 'centre'}
    """
    section = config["unet"]
    params = {k: v for k, v in section.items() if k != "val_every"}
    params.update(_training(config, section, fold))
    if str(fold) != "all":
        params.update(
            val_watershed=unet_validation_watershed(config),
            val_tile_size=config["tiling"]["tile_size"],
            val_halo=config["tiling"]["halo"],
        )
    return canonical(params)


def unet_validation_watershed(config: dict) -> dict:
    """The watershed that validates U-Net fold models: the configured one (:func:`watershed_settings`), with
    markers ``centre`` when the configured markers are the Mask R-CNN centroids (``points``), which a U-Net
    validated alone does not have.

    Examples
    --------
    >>> unet_validation_watershed({"watershed": {"markers": "points", "min_area": 30}})
    {'min_area': 30, 'mode': 'centre'}
    """
    ws = watershed_settings(config)
    if ws["mode"] == "points":
        ws["mode"] = "centre"
    return ws


def maskrcnn_settings(config: dict, fold="all") -> dict:
    """plateseg.engines.maskrcnn.MaskRCNNParams fields of the Mask R-CNN of ``fold``, from config
    ``maskrcnn.*`` (``target_min_area`` becomes ``min_area``; the inference keys
    :data:`MASKRCNN_INFERENCE_KEYS` are left out, but ``score_threshold`` and the tiling give the validation's
    ``val_score_threshold``, ``val_tile_size`` and ``val_halo``), ``training.seed`` and ``training.pixel_size``.

    Examples
    --------
    >>> cfg = {"maskrcnn": {"epochs": 2, "val_every": 1, "target_min_area": 4, "score_threshold": 0.5,
    ...        "mask_threshold": 0.5, "min_area": 30}, "training": {"seed": 0, "pixel_size": None},
    ...        "tiling": {"tile_size": 256, "halo": 32}}
    >>> maskrcnn_settings(cfg)["min_area"], maskrcnn_settings(cfg)["val_score_threshold"]
    (4, 0.5)
    """
    section = config["maskrcnn"]
    params = {k: v for k, v in section.items() if k != "val_every" and k not in MASKRCNN_INFERENCE_KEYS}
    params["min_area"] = params.pop("target_min_area")
    params.update(
        val_score_threshold=section["score_threshold"],
        val_tile_size=config["tiling"]["tile_size"],
        val_halo=config["tiling"]["halo"],
    )
    params.update(_training(config, section, fold))
    return canonical(params)


def engine_settings(config: dict, engine: str, fold="all") -> dict:
    """:func:`unet_settings` or :func:`maskrcnn_settings` by engine name (``"unet"`` or ``"maskrcnn"``)."""
    if engine == "unet":
        return unet_settings(config, fold)
    if engine == "maskrcnn":
        return maskrcnn_settings(config, fold)
    raise ValueError(f"unknown engine {engine!r}: expected 'unet' or 'maskrcnn'")


def maskrcnn_detection(config: dict) -> dict:
    """Mask R-CNN inference settings (``score_threshold``, ``mask_threshold``, ``min_area`` of config
    ``maskrcnn.*``).

    Examples
    --------
    >>> maskrcnn_detection({"maskrcnn": {"min_area": 30, "score_threshold": 0.5, "mask_threshold": 0.4, "lr": 1}})
    {'mask_threshold': 0.4, 'min_area': 30, 'score_threshold': 0.5}
    """
    return canonical({k: config["maskrcnn"][k] for k in MASKRCNN_INFERENCE_KEYS})


def watershed_settings(config: dict) -> dict:
    """Keyword arguments of plateseg.segment.watershed.instances_from_maps from config ``watershed.*``
    (``markers`` becomes ``mode``).

    Examples
    --------
    >>> watershed_settings({"watershed": {"markers": "centre", "min_area": 30}})
    {'min_area': 30, 'mode': 'centre'}
    """
    ws = dict(config["watershed"])
    ws["mode"] = ws.pop("markers")
    return canonical(ws)


def picker_settings(config: dict) -> dict:
    """plateseg.ensemble PickerParams fields from config ``ensemble.picker``, seeded by ``training.seed``.

    Examples
    --------
    >>> picker_settings({"ensemble": {"picker": {"n_boosters": 2}}, "training": {"seed": 3}})
    {'n_boosters': 2, 'seed': 3}
    """
    return canonical({**config["ensemble"]["picker"], "seed": config["training"]["seed"]})


def classical_settings(config: dict) -> dict:
    """Keyword arguments of the classical baseline (plateseg.segment.classical) from config
    ``segmentation.classical``.

    Examples
    --------
    >>> classical_settings({"segmentation": {"classical": {"sigma": 1.0, "min_area": 30}}})
    {'min_area': 30, 'sigma': 1.0}
    """
    return canonical(config["segmentation"]["classical"])


def cell_settings(config: dict) -> dict:
    """Keyword arguments of plateseg.segment.cells.propagate_cells from config ``cells.propagation``.

    The keys (defaults from the schema, chosen on synthetic training fields; ``bench/cells_synth.py`` measures
    them on held-out ones): ``sigma`` (0.5, smoothing of the stain, px), ``threshold`` (li | otsu, the mask cells
    grow in) times ``threshold_scale`` (1), ``regularization`` (0.01, distance against the elevation),
    ``elevation`` (ridge | intensity | gradient: where touching cells meet), ``ridge_sigma`` (1, scale of the
    dark lines, px) and ``max_distance`` (50 px from the nucleus).

    Examples
    --------
    >>> cell_settings({"cells": {"propagation": {"sigma": 0.5, "elevation": "ridge", "regularization": 0.01}}})
    {'elevation': 'ridge', 'regularization': 0.01, 'sigma': 0.5}
    """
    return canonical(config["cells"]["propagation"])
