"""Shared fixtures: the repository root, and a tiny synthetic plate for workflow tests."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))

# keep torch and BLAS to one thread per process: CI has 2 cores
os.environ.setdefault("OMP_NUM_THREADS", "1")


def tiny_config(workdir: Path, run_dir: Path, **overrides) -> Path:
    """Write a config for a tiny plate at workdir/config.yaml (repository defaults + overrides)."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["demo"]["enabled"] = False
    config["input"]["dir"] = str(run_dir / "images")
    config["evaluation"]["groundtruth"] = str(run_dir / "groundtruth")
    config["tiling"]["tile_size"] = 128
    for key, value in overrides.items():
        node = config
        *path, last = key.split(".")
        for k in path:
            node = node[k]
        node[last] = value
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the real snakemake on the repository's Snakefile in ``workdir``."""
    cmd = [
        SNAKEMAKE,
        "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir),
        "--configfile", str(workdir / "config.yaml"),
        "--cores", "2",
        *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A tiny imaging run: plate DEMO, wells A01 and A02, one 256x256 field, 2 channels, with ground truth."""
    from plateseg.synth import write_demo_run

    out = tmp_path_factory.mktemp("tiny_run")
    write_demo_run(out, plate="DEMO", rows="A", columns=(1, 2), fields=1, shape=(256, 256), seed=3)
    return out


@pytest.fixture
def plate_workdir(tmp_path, tiny_run) -> Path:
    """A fresh working directory with a private copy of the tiny run and its config."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    work = tmp_path / "work"
    work.mkdir()
    tiny_config(work, run)
    return work
