"""Config errors against the real schema (plateseg.config.checks.schema_problems): one line per problem, with
the key path and, for a misspelt key, the closest valid one."""
from __future__ import annotations

import yaml

from plateseg.config.checks import schema_problems
from support import REPO

SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())


def test_the_repository_configs_are_valid():
    for path in (REPO / "config.yaml", REPO / "config" / "demo-train.yaml"):
        assert schema_problems(yaml.safe_load(path.read_text()), SCHEMA) == [], path


def test_misspelt_and_wrong_keys_give_one_line_each():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["segmentaton"] = config.pop("segmentation")
    config["tiling"]["tile_size"] = "big"
    config["models"]["sourse"] = "train"
    config["watershed"] = {"markers": "centres"}
    problems = schema_problems(config, SCHEMA)
    assert problems == [
        "config key models.sourse: unknown key; did you mean models.source?",
        "config key segmentaton: unknown key; did you mean segmentation?",
        "config key tiling.tile_size: 'big' is not of type 'integer'",
        "config key watershed.markers: 'centres' is not one of ['boundary', 'centre', 'points']",
    ]
    assert all("\n" not in p and len(p) < 250 for p in problems)
