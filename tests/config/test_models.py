"""Model sets (plateseg.config.models): the shipped sets, the files a run uses, the set's settings under the
run's config, and the error for an unknown set."""
from __future__ import annotations

import pytest

from plateseg.config.checks import ConfigError
from plateseg.config.models import model_files, model_set_dir, shipped_sets, with_set_settings
from support import REPO


def test_the_repository_ships_dsb2018_fluo():
    assert "dsb2018-fluo" in shipped_sets(REPO)
    folder = model_set_dir("dsb2018-fluo", REPO)
    assert {"unet.pt", "maskrcnn.pt", "picker.json", "settings.yaml", "README.md"} <= {p.name for p in folder.iterdir()}


def test_an_unknown_set_names_the_key_and_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match=r"models\.set: 'dsb2018-flou' .*shipped sets: .*dsb2018-fluo"):
        model_set_dir("dsb2018-flou", REPO)
    with pytest.raises(ConfigError, match="shipped sets"):
        with_set_settings({"models": {"set": "nope"}}, REPO)


def test_files_come_from_the_set_unless_named(tmp_path):
    cfg = {"models": {"source": "pretrained", "set": "dsb2018-fluo", "unet": None, "maskrcnn": str(tmp_path / "m.pt"),
                      "picker": None}}
    files = model_files(cfg, REPO)
    assert files["unet"] == str(REPO / "models" / "dsb2018-fluo" / "unet.pt")
    assert files["maskrcnn"] == str(tmp_path / "m.pt")
    assert files["picker"] == str(REPO / "models" / "dsb2018-fluo" / "picker.json")
    # a folder works as a set too
    (tmp_path / "unet.pt").write_bytes(b"x")
    assert model_files({"models": {"set": str(tmp_path)}}, REPO) == {"unet": str(tmp_path / "unet.pt"),
                                                                     "maskrcnn": None, "picker": None}


def test_the_sets_settings_are_defaults_under_the_config():
    import yaml

    shipped = yaml.safe_load((REPO / "models" / "dsb2018-fluo" / "settings.yaml").read_text())
    merged = with_set_settings({"models": {"source": "pretrained"}, "watershed": {"min_area": 7}}, REPO)
    assert merged["watershed"]["min_area"] == 7  # the run's own key wins
    assert merged["watershed"]["fg_threshold"] == shipped["watershed"]["fg_threshold"]
    assert merged["ensemble"] == shipped["ensemble"]
    assert with_set_settings({"models": {"source": "train"}}, REPO) == {"models": {"source": "train"}}
    assert with_set_settings({"models": {"set": None}}, REPO) == {"models": {"set": None}}


def test_finetune_trains_with_the_finetune_defaults_unless_the_config_sets_them():
    """models.source finetune: the engines' short low-lr schedule (params.FINETUNE_DEFAULTS), not the schema's
    from-scratch training defaults (U-Net lr 3e-3, 20 epochs); a key of the run's config wins."""
    from snakemake.utils import validate

    from plateseg.config.params import FINETUNE_DEFAULTS, engine_settings

    raw = {"input": {"dir": "x"}, "channels": {"names": {"1": "DNA"}, "nuclear": "1"},
           "models": {"source": "finetune"}, "maskrcnn": {"lr": 5e-5}}
    config = with_set_settings(raw, REPO)
    validate(config, str(REPO / "workflow" / "schemas" / "config.schema.yaml"), set_default=True)
    unet, mrcnn = engine_settings(config, "unet"), engine_settings(config, "maskrcnn")
    assert {k: unet[k] for k in FINETUNE_DEFAULTS["unet"]} == FINETUNE_DEFAULTS["unet"]
    assert mrcnn["lr"] == 5e-5 and mrcnn["epochs"] == FINETUNE_DEFAULTS["maskrcnn"]["epochs"]
    # training from scratch keeps the schema's defaults
    scratch = with_set_settings({**raw, "models": {"source": "train"}}, REPO)
    validate(scratch, str(REPO / "workflow" / "schemas" / "config.schema.yaml"), set_default=True)
    assert engine_settings(scratch, "unet")["lr"] != FINETUNE_DEFAULTS["unet"]["lr"]
