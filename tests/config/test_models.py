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
