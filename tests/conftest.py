"""Shared fixtures: a tiny synthetic plate run and trained once per session for the workflow tests."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from support import run_snakemake, tiny_config


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A tiny imaging run: plate DEMO, wells A01 and A02, one 256x256 field, 2 channels, with ground truth."""
    from plateseg.io.synth import write_demo_run

    out = tmp_path_factory.mktemp("tiny_run")
    write_demo_run(out, plate="DEMO", rows="A", columns=(1, 2), fields=1, shape=(256, 256), seed=3)
    return out


@pytest.fixture(scope="session")
def trained_plate(tmp_path_factory, tiny_run) -> Path:
    """The tiny run after one complete workflow run (``run/`` and ``work/`` side by side), made once."""
    base = tmp_path_factory.mktemp("trained_plate")
    shutil.copytree(tiny_run, base / "run")
    (base / "work").mkdir()
    tiny_config(base / "work", base / "run")
    run_snakemake(base / "work")
    return base


@pytest.fixture
def plate_workdir(tmp_path, trained_plate) -> Path:
    """A private copy of the tiny run, its config and the results of a complete workflow run (times kept)."""
    shutil.copytree(trained_plate / "run", tmp_path / "run")
    shutil.copytree(trained_plate / "work", tmp_path / "work", symlinks=True)
    return tmp_path / "work"
