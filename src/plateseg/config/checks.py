"""Checks of a validated config that a JSON schema cannot express (settings from a config:
:mod:`plateseg.config.params`; the demo plate: :mod:`plateseg.config.demo`).

Errors name the config key and say what was expected.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

__all__ = ["ConfigError", "check_config", "engines_used", "fill_defaults", "load_yaml", "prepend_pythonpath",
           "schema_problems"]

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key."""


def schema_problems(config: dict, schema: dict) -> list[str]:
    """One line per way ``config`` breaks the JSON ``schema``: the key path and what was expected; for an
    unknown key, the closest valid key (no schema dump).

    Examples
    --------
    >>> schema = {"type": "object", "additionalProperties": False, "properties": {
    ...     "segmentation": {"type": "object", "properties": {"method": {"enum": ["unet", "classical"]}}},
    ...     "tiling": {"type": "object", "properties": {"tile_size": {"type": "integer"}}}}}
    >>> for line in schema_problems({"segmentaton": {}, "tiling": {"tile_size": "big"}}, schema):
    ...     print(line)
    config key segmentaton: unknown key; did you mean segmentation?
    config key tiling.tile_size: 'big' is not of type 'integer'
    """
    import difflib

    import jsonschema

    validator = jsonschema.validators.validator_for(schema)(schema)
    problems = []
    for err in sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path]):
        path = ".".join(str(p) for p in err.absolute_path)
        prefix = f"{path}." if path else ""
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            valid = sorted(err.schema.get("properties", {}))
            for key in sorted(set(err.instance) - set(valid)):
                close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.6)
                hint = f"did you mean {prefix}{close[0]}?" if close else f"valid keys: {', '.join(valid)}"
                problems.append(f"config key {prefix}{key}: unknown key; {hint}")
            continue
        message = err.message if len(err.message) <= 200 else err.message[:197] + "..."
        problems.append(f"config key {path or '(top level)'}: {message}")
    return sorted(problems)  # by key path


def load_yaml(path):
    """The YAML file at ``path``, parsed by libyaml where PyYAML has it (the config schema takes ~0.3 s in pure
    Python, at every load of the workflow)."""
    import yaml

    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def fill_defaults(config: dict, schema: dict) -> dict:
    """Set the ``default`` of every schema property missing from ``config`` (in place, nested objects too) and
    return it: what ``snakemake.utils.validate(config, path)`` does, on a schema already loaded (it would parse
    the file again). Check the config with :func:`schema_problems` first.

    Examples
    --------
    >>> schema = {"type": "object", "properties": {"tiling": {"type": "object", "default": {},
    ...     "properties": {"tile_size": {"type": "integer", "default": 512}, "halo": {"default": 32}}}}}
    >>> fill_defaults({"tiling": {"halo": 16}}, schema)
    {'tiling': {'halo': 16, 'tile_size': 512}}
    >>> fill_defaults({}, schema)
    {'tiling': {'tile_size': 512, 'halo': 32}}
    """
    from jsonschema import validators

    base = validators.validator_for(schema)
    properties = base.VALIDATORS["properties"]

    def set_defaults(validator, props, instance, sub):
        for key, prop in props.items():
            if "default" in prop and isinstance(instance, dict):
                instance.setdefault(key, prop["default"])
        yield from properties(validator, props, instance, sub)

    validators.extend(base, {"properties": set_defaults})(schema).validate(config)
    return config


def check_config(config: dict) -> None:
    """Raise :class:`ConfigError` for config values that are valid by schema but cannot work.

    Examples
    --------
    >>> check_config({"input": {"dir": "x", "scheme": "regex", "pattern": None}, "channels": {"names": {"1": "DNA"}, "nuclear": "1"}, "demo": {"enabled": True}})
    Traceback (most recent call last):
    ...
    plateseg.config.checks.ConfigError: config key input.pattern: scheme 'regex' needs a regex with named groups, got none
    """
    inp, ch = config["input"], config["channels"]
    if inp.get("scheme") == "regex" and not inp.get("pattern"):
        raise ConfigError("config key input.pattern: scheme 'regex' needs a regex with named groups, got none")
    if inp.get("scheme") == "samplesheet":
        sheet = inp.get("sample_sheet")
        if not sheet or not Path(sheet).is_file():
            raise ConfigError(f"config key input.sample_sheet: scheme 'samplesheet' needs an existing CSV file, got {sheet!r}")
    if ch["nuclear"] not in ch["names"]:
        raise ConfigError(
            f"config key channels.nuclear: {ch['nuclear']!r} is not one of the channel ids in channels.names "
            f"({sorted(ch['names'])})"
        )
    cell_channel = (config.get("cells") or {}).get("channel")
    if cell_channel is not None and cell_channel not in ch["names"]:
        raise ConfigError(
            f"config key cells.channel: {cell_channel!r} is not one of the channel ids in channels.names "
            f"({sorted(ch['names'])})"
        )
    demo = config.get("demo", {})
    if not demo.get("enabled") and not Path(inp["dir"]).is_dir():
        raise ConfigError(f"config key input.dir: folder {inp['dir']!r} does not exist")
    if demo.get("enabled") and Path(os.path.normpath(inp["dir"])) != Path(os.path.normpath(demo["dir"])) / "images":
        raise ConfigError(
            f"config key input.dir: with demo.enabled the images are the demo's, {demo['dir']!r}/images; got {inp['dir']!r}"
        )
    if demo.get("enabled") and inp.get("scheme") != "cellprofiler":
        raise ConfigError(f"config key input.scheme: the demo plate's files are named 'cellprofiler', got {inp.get('scheme')!r}")
    tiling = config.get("tiling", {})
    if tiling and tiling.get("halo", 0) >= tiling.get("tile_size", 1):
        raise ConfigError(
            f"config key tiling.halo: must be smaller than tiling.tile_size ({tiling['tile_size']}), got {tiling['halo']}"
        )
    if tiling and tiling.get("block_size", 0) % tiling.get("tile_size", 1):
        raise ConfigError(f"config key tiling.block_size: must be a multiple of tiling.tile_size ({tiling['tile_size']}) "
                          f"so that blocks are whole chunks, got {tiling['block_size']}")
    if tiling and tiling.get("block_halo", 0) >= tiling.get("block_size", 2**31):
        raise ConfigError(f"config key tiling.block_halo: must be smaller than tiling.block_size "
                          f"({tiling['block_size']}), got {tiling['block_halo']}")
    ev = config.get("evaluation", {})
    if ev.get("groundtruth") and not demo.get("enabled") and not Path(ev["groundtruth"]).is_dir():
        raise ConfigError(f"config key evaluation.groundtruth: folder {ev['groundtruth']!r} does not exist")
    engines = engines_used(config)
    if engines & {"unet", "maskrcnn"}:
        _check_training(config, engines)
    if "unet" in engines:
        _check_unet(config)
    if "maskrcnn" in engines:
        _check_maskrcnn(config)


def engines_used(config: dict) -> set[str]:
    """The segmentation methods a run needs: the final method, the compared label sets, both engines for the
    ensemble, and Mask R-CNN when the U-Net watershed takes its markers from Mask R-CNN centroids.

    Examples
    --------
    >>> sorted(engines_used({"segmentation": {"method": "unet"}, "watershed": {"markers": "points"}}))
    ['maskrcnn', 'unet']
    >>> sorted(engines_used({"segmentation": {"method": "classical"}, "evaluation": {"compare": ["unet"], "groundtruth": None}}))
    ['classical']
    """
    engines = {config.get("segmentation", {}).get("method", "unet")}
    ev = config.get("evaluation", {})
    if ev.get("groundtruth"):
        engines |= set(ev.get("compare", []))
    if "ensemble" in engines:
        engines |= {"unet", "maskrcnn"}
    if "unet" in engines and config.get("watershed", {}).get("markers") == "points":
        engines.add("maskrcnn")
    return engines


def _check_training(config: dict, engines: set) -> None:
    """Checks of the model sources of the deep-learning engines in use."""
    models = config.get("models", {})
    source = models.get("source")
    if source in ("pretrained", "finetune"):
        needed = sorted(engines & {"unet", "maskrcnn"})
        if source == "finetune":
            needed = ["maskrcnn", "unet"] if "ensemble" in engines else needed
        elif "ensemble" in engines:
            needed.append("picker")
        for engine in needed:
            ckpt = models.get(engine)
            if not ckpt or not Path(ckpt).is_file():
                raise ConfigError(
                    f"config key models.{engine}: models.source {source!r} needs an existing {engine} model file "
                    f"(models.{engine}, or one of the set models.set {models.get('set')!r}), got {ckpt!r}"
                )
        if source == "pretrained":
            return
    folder = config.get("training", {}).get("annotations")
    if folder and not ((Path(folder) / "images").is_dir() and (Path(folder) / "masks").is_dir()):
        raise ConfigError(f"config key training.annotations: {folder!r} is not a folder with images/ and masks/ (dsb2018 layout)")


def _check_unet(config: dict) -> None:
    """Checks of the U-Net keys (only when the U-Net is used)."""
    unet = config.get("unet", {})
    depth = unet.get("encoder_depth", 4)
    if len(unet.get("decoder_channels", [0] * depth)) != depth:
        raise ConfigError(
            f"config key unet.decoder_channels: needs one entry per unet.encoder_depth ({depth}), got {unet['decoder_channels']}"
        )
    if unet.get("crop_size", 2**depth) % 2**depth:
        raise ConfigError(f"config key unet.crop_size: must be a multiple of 2 ** unet.encoder_depth ({2**depth}), got {unet['crop_size']}")
    if unet.get("p_low", 1.0) >= unet.get("p_high", 99.8):
        raise ConfigError("config key unet.p_low: must be smaller than unet.p_high")


def _check_maskrcnn(config: dict) -> None:
    """Checks of the Mask R-CNN keys (only when Mask R-CNN is used)."""
    m = config.get("maskrcnn", {})
    if m.get("p_low", 1.0) >= m.get("p_high", 99.8):
        raise ConfigError("config key maskrcnn.p_low: must be smaller than maskrcnn.p_high")
    if m.get("rpn_post_nms_top_n_test", 1000) < m.get("box_detections_per_img", 1000):
        raise ConfigError(
            f"config key maskrcnn.rpn_post_nms_top_n_test: must be at least maskrcnn.box_detections_per_img "
            f"({m.get('box_detections_per_img', 1000)}), got {m['rpn_post_nms_top_n_test']}"
        )


def prepend_pythonpath(path) -> None:
    """Put ``path`` first on ``PYTHONPATH`` of this process, so job subprocesses import from it."""
    parts = [str(path)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(path)]
    os.environ["PYTHONPATH"] = os.pathsep.join(parts)
