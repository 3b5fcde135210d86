"""What the tests share besides fixtures: the repository root, tiny model settings, tiny workflow configs and
snakemake runs, a dry run's job list, a minimal config for config checks.

A plain module (``from support import ...``): conftest modules of sub-folders would shadow ``conftest``.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))

# keep torch and BLAS to one thread per process: CI has 2 cores
os.environ.setdefault("OMP_NUM_THREADS", "1")


# a tiny U-Net trained for seconds on a few small synthetic images (plumbing, not accuracy)
TINY_UNET = {
    "training.synthetic.n_images": 6,
    "training.synthetic.size": 128,
    "training.folds": 2,
    "unet.encoder_depth": 3,
    "unet.decoder_channels": [16, 8, 8],
    "unet.crop_size": 64,
    "unet.batch_size": 8,
    "unet.samples_per_epoch": 64,
    "unet.epochs": 10,
    "unet.lr": 0.005,
    "unet.warmup_steps": 2,
    "unet.val_every": 5,
}
# a tiny Mask R-CNN trained for ~15 s (plumbing: it over-detects)
TINY_MASKRCNN = {
    "maskrcnn.fpn_channels": 32,
    "maskrcnn.box_head_dim": 128,
    "maskrcnn.mask_head_channels": 32,
    "maskrcnn.crop_size": 64,
    "maskrcnn.batch_size": 4,
    "maskrcnn.samples_per_epoch": 16,
    "maskrcnn.epochs": 15,
    "maskrcnn.lr": 0.002,
    "maskrcnn.warmup_steps": 4,
    "maskrcnn.rpn_pre_nms_top_n_test": 300,
    "maskrcnn.rpn_post_nms_top_n_test": 300,
    "maskrcnn.box_detections_per_img": 300,
    "maskrcnn.box_batch_size_per_image": 64,
    "maskrcnn.val_every": 5,
}


def tiny_config(workdir: Path, run_dir: Path, **overrides) -> Path:
    """Write a config for a tiny plate at workdir/config.yaml (repository defaults, tiny models, overrides).

    Paths are relative to ``workdir``, so a copy of ``workdir`` and ``run_dir`` side by side is the same run.
    """
    config = yaml.safe_load((REPO / "config" / "demo-train.yaml").read_text())
    config["demo"]["enabled"] = False
    config["input"]["dir"] = os.path.relpath(run_dir / "images", workdir)
    config["evaluation"]["groundtruth"] = os.path.relpath(run_dir / "groundtruth", workdir)
    config["tiling"]["tile_size"] = 128
    # the tiny plates have the nuclear and marker channels only, unless a test asks for cells
    nuclei_only = {"channels.names": {"1": "DNA", "2": "Marker"}, "cells.channel": None}
    for key, value in {**TINY_UNET, **TINY_MASKRCNN, **nuclei_only, **overrides}.items():
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


def dry_run_jobs(out: str) -> Counter:
    """(rule, well or label set or fold or '') of every job in the output of a snakemake dry run (a job of an HCS
    plate well, wildcards row and column, is given its well as the tests' plates name them: A01)."""
    jobs = Counter()
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out):
        m = re.match(r"(?:local)?rule (\w+):", block.strip())
        if not m or m.group(1) == "all":
            continue
        w = re.search(r"(?:well|labelset|fold)=(\w+)", block)
        rc = re.search(r"row=([A-Z]+), column=(\d+)", block)
        jobs[(m.group(1), w.group(1) if w else f"{rc.group(1)}{int(rc.group(2)):02d}" if rc else "")] += 1
    return jobs


def checked_config(tmp_path, **sections):
    """A minimal config for check_config in ``tmp_path``, with ``section__key=value`` changes."""
    cfg = {"input": {"dir": str(tmp_path), "scheme": "cellprofiler"}, "channels": {"names": {"1": "DNA"}, "nuclear": "1"},
           "demo": {"enabled": False}, "tiling": {"tile_size": 256, "halo": 32, "block_size": 2048, "block_halo": 64}, "evaluation": {"groundtruth": None},
           "segmentation": {"method": "unet"}, "models": {"source": "train", "unet": None, "maskrcnn": None, "picker": None},
           "training": {"annotations": None},
           "unet": {"encoder_depth": 4, "decoder_channels": [64, 32, 16, 16], "crop_size": 128, "p_low": 1.0, "p_high": 99.8},
           "maskrcnn": {"p_low": 1.0, "p_high": 99.8, "rpn_post_nms_top_n_test": 1000, "box_detections_per_img": 1000},
           "watershed": {"markers": "centre"}}
    for key, value in sections.items():
        section, name = key.split("__")
        cfg[section][name] = value
    return cfg
