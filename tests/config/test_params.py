"""Config -> settings (plateseg.config.params) on the repository's config.yaml with the schema's defaults, and
the one-source-of-defaults check: every schema default equals the library default it stands for."""
from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import re
from pathlib import Path

import pytest
import yaml

from plateseg.config import params

REPO = Path(__file__).resolve().parents[2]
SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())


@pytest.fixture
def config():
    """config.yaml with every schema default filled in, as the Snakefile's validate() leaves it."""
    from snakemake.utils import validate

    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    validate(cfg, str(REPO / "workflow" / "schemas" / "config.schema.yaml"), set_default=True)
    return cfg


def _defaults(*path):
    node = SCHEMA
    for key in path:
        node = node["properties"][key]
    return {k: v["default"] for k, v in node["properties"].items() if "default" in v}


def _tuples(v):
    return tuple(_tuples(a) for a in v) if isinstance(v, (list, tuple)) else v


def _field_defaults(cls):
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


def _picker_params_class():
    """PickerParams, wherever the ensemble package defines it."""
    for path in sorted((REPO / "src" / "plateseg" / "ensemble").glob("*.py")):
        if re.search(r"^class PickerParams\b", path.read_text(), re.M):
            return importlib.import_module(f"plateseg.ensemble.{path.stem}").PickerParams
    raise AssertionError("no PickerParams in plateseg.ensemble")


def test_settings_are_canonical_and_fold_dependent(config):
    for fold in ("all", "0"):
        for settings in (params.unet_settings(config, fold), params.maskrcnn_settings(config, fold)):
            assert list(settings) == sorted(settings)
    assert list(params.watershed_settings(config)) == sorted(params.watershed_settings(config))
    shuffled = copy.deepcopy(config)
    shuffled["unet"] = dict(reversed(list(config["unet"].items())))
    assert repr(params.unet_settings(shuffled, "1")) == repr(params.unet_settings(config, "1"))


def test_unet_settings(config):
    every = params.unet_settings(config, "all")
    fold = params.unet_settings(config, "1")
    assert every["channels"] == [0] and every["seed"] == config["training"]["seed"]
    assert every["epochs"] == config["unet"]["epochs"] and every["crop_size"] == config["unet"]["crop_size"]
    # the model on all data is not validated: no validation settings, so they never retrain it
    assert not {"val_every", "val_watershed", "val_tile_size", "val_halo"} & set(every)
    # fold models are validated with the configured watershed and tiling
    assert fold["val_every"] == config["unet"]["val_every"]
    assert fold["val_watershed"] == params.watershed_settings(config)
    assert fold["val_watershed"]["mode"] == config["watershed"]["markers"] == "centre"
    assert (fold["val_tile_size"], fold["val_halo"]) == (config["tiling"]["tile_size"], config["tiling"]["halo"])
    assert {k: v for k, v in fold.items() if not k.startswith("val_")} == every
    # with Mask R-CNN centroids as markers, a U-Net validated alone uses its centre markers
    config["watershed"]["markers"] = "points"
    assert params.unet_settings(config, "1")["val_watershed"] == {**params.watershed_settings(config), "mode": "centre"}


def test_maskrcnn_settings_and_detection(config):
    s = params.maskrcnn_settings(config, "all")
    m = config["maskrcnn"]
    assert s["min_area"] == m["target_min_area"] and "target_min_area" not in s
    assert not {"score_threshold", "mask_threshold", "val_every"} & set(s)
    assert (s["val_score_threshold"], s["val_tile_size"], s["val_halo"]) == (
        m["score_threshold"], config["tiling"]["tile_size"], config["tiling"]["halo"])
    assert params.maskrcnn_settings(config, "0")["val_every"] == m["val_every"]
    assert params.maskrcnn_detection(config) == {"mask_threshold": m["mask_threshold"], "min_area": m["min_area"],
                                                 "score_threshold": m["score_threshold"]}
    assert params.engine_settings(config, "maskrcnn", "0") == params.maskrcnn_settings(config, "0")
    with pytest.raises(ValueError, match="engine"):
        params.engine_settings(config, "nope")


def test_watershed_picker_classical_settings(config):
    ws = params.watershed_settings(config)
    assert ws["mode"] == config["watershed"]["markers"] and "markers" not in ws
    assert set(ws) - {"mode"} == set(config["watershed"]) - {"markers"}
    picker = params.picker_settings(config)
    assert picker["seed"] == config["training"]["seed"] and picker["n_boosters"] == config["ensemble"]["picker"]["n_boosters"]
    assert params.classical_settings(config) == dict(sorted(config["segmentation"]["classical"].items()))


def test_settings_build_the_library_objects(config):
    """What the rules pass is accepted by the settings classes and the segmentation functions."""
    from plateseg.segment.watershed import instances_from_maps

    inspect.signature(instances_from_maps).bind(None, **params.watershed_settings(config))
    PickerParams = _picker_params_class()
    picker = PickerParams.coerce(params.picker_settings(config))
    assert picker.n_boosters == config["ensemble"]["picker"]["n_boosters"]
    assert params.coerce_params(PickerParams, None, "picker") == PickerParams()
    with pytest.raises(TypeError, match="unknown picker parameters"):
        params.coerce_params(PickerParams, {"nope": 1}, "picker")


@pytest.mark.parametrize("engine", ["unet", "maskrcnn"])
def test_engine_settings_build_the_engine_params(config, engine):
    pytest.importorskip("torch")
    module = importlib.import_module(f"plateseg.engines.{engine}")
    cls = module.UNetParams if engine == "unet" else module.MaskRCNNParams
    for fold in ("all", "0"):
        p = cls.coerce(params.engine_settings(config, engine, fold))
        assert p.epochs == config[engine]["epochs"]
    if engine == "unet":
        assert cls.coerce(params.unet_settings(config, "0")).val_watershed == params.watershed_settings(config)


def test_schema_defaults_equal_the_library_defaults():
    """One source of defaults: bench/ and the workflow train the same models from "the defaults"."""
    pytest.importorskip("torch")
    from plateseg.engines.maskrcnn import MaskRCNNParams
    from plateseg.engines.unet import UNetParams
    from plateseg.segment.watershed import instances_from_maps

    rename = {"maskrcnn": {"target_min_area": "min_area"}, "watershed": {"markers": "mode"}}
    skip = {"maskrcnn": set(params.MASKRCNN_INFERENCE_KEYS)}
    library = {
        "unet": _field_defaults(UNetParams),
        "maskrcnn": _field_defaults(MaskRCNNParams),
        "watershed": {k: v.default for k, v in inspect.signature(instances_from_maps).parameters.items()
                      if v.default is not inspect.Parameter.empty},
    }
    schema = {"unet": _defaults("unet"), "maskrcnn": _defaults("maskrcnn"), "watershed": _defaults("watershed")}
    library["picker"] = _field_defaults(_picker_params_class())
    schema["picker"] = _defaults("ensemble", "picker")
    differ = []
    for section, defaults in schema.items():
        for key, value in defaults.items():
            if key in skip.get(section, ()):
                continue
            name = rename.get(section, {}).get(key, key)
            assert name in library[section], f"schema {section}.{key} is no library setting"
            if _tuples(value) != _tuples(library[section][name]):
                differ.append(f"{section}.{key}: schema {value!r}, library {library[section][name]!r}")
    assert not differ, "schema and library defaults differ:\n" + "\n".join(differ)


def test_cell_propagation_defaults_are_the_library_defaults_and_the_configs_values():
    """cells.propagation: the schema's defaults are propagate_cells's, and both repository configs spell them out."""
    from plateseg.segment.cells import propagate_cells

    # levels: the whole field's stain levels handed to one block of it (segment_cells), not a setting
    library = {k: v.default for k, v in inspect.signature(propagate_cells).parameters.items()
               if v.default is not inspect.Parameter.empty and k != "levels"}
    schema = _defaults("cells", "propagation")
    assert schema == library
    for path in (REPO / "config.yaml", REPO / "config" / "demo-train.yaml"):
        assert yaml.safe_load(path.read_text())["cells"]["propagation"] == schema, path
    assert params.cell_settings({"cells": {"propagation": schema}}) == dict(sorted(library.items()))
