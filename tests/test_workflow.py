"""Workflow tests: real snakemake runs on a tiny synthetic plate.

They check what a user relies on: outputs and their contents, that an immediate rerun has nothing
to do, that a changed segmentation parameter reruns segmentation and what follows but not ingest,
that a new well is processed alone (plus the plate-level tables), and clear errors for bad input.
"""
from __future__ import annotations

import re
import shutil
from collections import Counter

import pandas as pd
import pytest
import yaml

from conftest import run_snakemake

pytestmark = pytest.mark.workflow

WELL_RULES = {"ingest", "segment_classical", "measure", "summarize_well"}
PLATE_RULES = {"plate_summary", "plate_qc", "evaluate"}


def planned_jobs(workdir) -> Counter:
    """(rule, well or '') of every job a dry run would execute."""
    out = run_snakemake(workdir, "--dry-run").stdout
    jobs = Counter()
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out):
        m = re.match(r"(?:local)?rule (\w+):", block.strip())
        if not m or m.group(1) == "all":
            continue
        w = re.search(r"well=(\w+)", block)
        jobs[(m.group(1), w.group(1) if w else "")] += 1
    return jobs


def test_demo_plate_end_to_end_and_reruns(plate_workdir):
    work = plate_workdir
    run_snakemake(work)

    # per-well CSVs and plate summary, with counts close to the synthetic truth
    truth = pd.read_csv(work.parent / "run" / "groundtruth" / "truth.csv")
    summary = pd.read_csv(work / "results" / "DEMO" / "plate_summary.csv")
    assert list(summary["Metadata_Well"]) == ["A01", "A02"]
    for well, n_true in truth.groupby("well")["n_nuclei"].sum().items():
        well_csv = pd.read_csv(work / "results" / "DEMO" / "wells" / f"{well}.csv")
        n = int(well_csv["Count_Nuclei"].iloc[0])
        assert n == int(summary.set_index("Metadata_Well").loc[well, "Count_Nuclei"])
        assert abs(n - n_true) <= max(2, 0.1 * n_true), (well, n, n_true)
    assert summary["Count_Nuclei"].iloc[1] > summary["Count_Nuclei"].iloc[0]  # density rises by column

    objects = pd.read_parquet(work / "results" / "DEMO" / "A01" / "objects.parquet")
    for col in ["Metadata_Plate", "Metadata_Well", "Metadata_Field", "ObjectNumber", "Location_Center_X",
                "AreaShape_Area", "Intensity_MeanIntensity_DNA", "Intensity_MeanIntensity_Marker", "Ensemble_Source"]:
        assert col in objects.columns, col
    assert len(objects) == summary.set_index("Metadata_Well").loc["A01", "Count_Nuclei"]

    ev = pd.read_csv(work / "results" / "DEMO" / "evaluation" / "classical.csv")
    assert ev["n_fields"].iloc[0] == 2 and 0.3 < ev["mean_dsb_map"].iloc[0] <= 1.0 and ev["total_n_true"].iloc[0] > 10
    assert (work / "results" / "DEMO" / "qc" / "plate_counts.png").stat().st_size > 1000
    for log in (work / "logs" / "DEMO" / "A01").iterdir():
        assert log.stat().st_size > 0, log  # every rule wrote its log

    # an immediate second run has nothing to do
    assert planned_jobs(work) == Counter()

    # a changed segmentation parameter reruns segmentation and everything after it, never ingest
    config = yaml.safe_load((work / "config.yaml").read_text())
    config["segmentation"]["classical"]["sigma"] = 2.0
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    jobs = planned_jobs(work)
    assert {rule for rule, _ in jobs} == {"segment_classical", "measure", "summarize_well"} | PLATE_RULES
    assert jobs[("segment_classical", "A01")] == 1 and jobs[("segment_classical", "A02")] == 1
    ingest_mtime = (work / "results" / "DEMO" / "A01" / "image.zarr" / "zarr.json").stat().st_mtime_ns
    run_snakemake(work)
    assert (work / "results" / "DEMO" / "A01" / "image.zarr" / "zarr.json").stat().st_mtime_ns == ingest_mtime
    assert planned_jobs(work) == Counter()


def test_new_well_processes_only_that_well(plate_workdir, tmp_path):
    from plateseg.synth import write_demo_run

    work = plate_workdir
    run_snakemake(work)
    extra = tmp_path / "extra"
    write_demo_run(extra, plate="DEMO", rows="A", columns=(3,), fields=1, shape=(256, 256), seed=3)
    run = work.parent / "run"
    for sub in ("images", "groundtruth"):
        for f in (extra / sub).glob("DEMO_A03_*"):
            shutil.copy(f, run / sub / f.name)
    jobs = planned_jobs(work)
    assert {w for (rule, w) in jobs if rule in WELL_RULES} == {"A03"}
    assert {rule for rule, _ in jobs} == WELL_RULES | PLATE_RULES
    run_snakemake(work)
    summary = pd.read_csv(work / "results" / "DEMO" / "plate_summary.csv")
    assert list(summary["Metadata_Well"]) == ["A01", "A02", "A03"]


def test_bad_config_names_the_key(plate_workdir):
    config = yaml.safe_load((plate_workdir / "config.yaml").read_text())
    config["channels"]["nuclear"] = "7"
    (plate_workdir / "config.yaml").write_text(yaml.safe_dump(config))
    proc = run_snakemake(plate_workdir, "--dry-run", check=False)
    assert proc.returncode != 0
    assert "channels.nuclear" in proc.stdout + proc.stderr

    config["channels"]["nuclear"] = "1"
    config["tiling"]["tile_size"] = "big"
    (plate_workdir / "config.yaml").write_text(yaml.safe_dump(config))
    proc = run_snakemake(plate_workdir, "--dry-run", check=False)
    assert proc.returncode != 0
    assert "tile_size" in proc.stdout + proc.stderr


def test_unmatched_files_are_reported(plate_workdir):
    (plate_workdir.parent / "run" / "images" / "notes_about_plate.tif").write_bytes(b"")
    proc = run_snakemake(plate_workdir, "--dry-run")
    assert "notes_about_plate.tif" in proc.stdout + proc.stderr


def test_lint_is_clean(plate_workdir):
    proc = run_snakemake(plate_workdir, "--lint", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Congratulations" in out, out
