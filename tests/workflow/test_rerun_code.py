"""Workflow tests of what loading the workflow and editing the library do, on a copy of the repository tree.

- A change in a library module reruns exactly the rules whose scripts reach that module through imports
  (plateseg.config.provenance.script_code_hash) and what follows them: an edit of
  plateseg.segment.watershed reruns the watershed and the measurements, summaries and evaluation of its
  labels, not ingest, the classical baseline, U-Net inference or training.
- Loading the workflow writes nothing: a dry run and the linter on a fresh copy list the demo_plate job and
  write no resources/ folder.

The copy is the code that runs: its Snakefile puts its own src/ first on sys.path (when the workflow loads)
and on PYTHONPATH (of the jobs).
"""
from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from support import REPO, SNAKEMAKE, tiny_config
from support import dry_run_jobs as planned_jobs

pytestmark = pytest.mark.workflow

IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".snakemake", "results", "logs")


def copy_repository(dest: Path) -> Path:
    """The files a run needs (Snakefile, config.yaml, config/, workflow/, src/, envs/, profiles/, models/, demo/) copied to ``dest``."""
    dest.mkdir(parents=True)
    for name in ("src", "workflow", "envs", "profiles", "config", "models", "demo"):
        shutil.copytree(REPO / name, dest / name, ignore=IGNORE)
    for name in ("Snakefile", "config.yaml"):
        shutil.copy2(REPO / name, dest / name)
    return dest


def snakemake(repo: Path, workdir: Path, *args: str, configfile: bool = True) -> subprocess.CompletedProcess:
    cmd = [SNAKEMAKE, "--snakefile", str(repo / "Snakefile"), "--directory", str(workdir), "--cores", "2", *args]
    if configfile:
        cmd += ["--configfile", str(workdir / "config.yaml")]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def reaches(repo: Path, rule: str, module: str) -> bool:
    """Whether the script of ``rule`` in ``repo`` reaches ``module`` through the library's imports."""
    from plateseg.config.provenance import imported_modules, module_closure

    rules = "\n".join(p.read_text() for p in sorted((repo / "workflow" / "rules").glob("*.smk")))
    block = re.search(rf"rule {rule}:(.*?)(?:\n\s*rule \w+:|\Z)", rules, re.S).group(1)
    script = re.search(r'script:\s*"\.\./scripts/(\w+)\.py"', block).group(1)
    path = repo / "workflow" / "scripts" / f"{script}.py"
    imports = [m for m in imported_modules(path.read_text()) if m.startswith("plateseg")]
    return module in module_closure(imports, repo / "src")


def test_a_library_edit_reruns_exactly_the_rules_that_reach_it(tmp_path, tiny_run):
    repo = copy_repository(tmp_path / "repo")
    shutil.copytree(tiny_run, tmp_path / "run")
    work = tmp_path / "work"
    work.mkdir()
    tiny_config(work, tmp_path / "run", **{"segmentation.method": "unet", "evaluation.compare": ["classical"]})
    snakemake(repo, work)
    assert planned_jobs(snakemake(repo, work, "--dry-run").stdout) == Counter()

    # a harmless change of the watershed module: a new module-level constant
    with open(repo / "src" / "plateseg" / "segment" / "watershed.py", "a") as f:
        f.write("\nRERUN_TEST_CONSTANT = 1\n")
    out = snakemake(repo, work, "--dry-run").stdout
    print(out[out.index("Job stats:"):])
    jobs = planned_jobs(out)
    expected = {
        ("watershed", "A01"), ("watershed", "A02"),
        ("measure", "A01"), ("measure", "A02"),
        ("hcs_well", "A01"), ("hcs_well", "A02"),  # the HCS plate holds the new labels
        ("plate_summary", ""), ("plate_qc", ""), ("hcs_plate", ""),
        ("evaluate", "unet"),
    }
    # the model inference uses is trained and run by code that never reaches the watershed (fold models,
    # validated with the configured watershed, are trained by another rule and script)
    assert not reaches(repo, "train_unet", "plateseg.segment.watershed")
    assert not reaches(repo, "infer_unet", "plateseg.segment.watershed")
    assert reaches(repo, "train_unet_fold", "plateseg.segment.watershed")
    assert set(jobs) == expected, sorted(jobs)
    rules = {rule for rule, _ in jobs}
    assert not rules & {"ingest", "segment_classical", "synth_training", "train_unet", "infer_unet"}
    assert ("evaluate", "classical") not in jobs  # the classical labels' evaluation does not use the watershed

    # the jobs run the copy's library: after the rerun nothing is left to do
    snakemake(repo, work)
    assert planned_jobs(snakemake(repo, work, "--dry-run").stdout) == Counter()


def test_loading_the_workflow_writes_no_files(tmp_path):
    """A dry run and the linter on a fresh clone write nothing: with the embedded config (the shipped models on
    the real-image demo plate: no training) and with the synthetic-training demo, whose plate is a job's output."""
    repo = copy_repository(tmp_path / "clone")
    jobs = planned_jobs(snakemake(repo, repo, "--dry-run", configfile=False).stdout)
    assert jobs[("ingest", "A01")] == 1 and jobs[("evaluate", "ensemble")] == 1 and jobs[("pick", "B03")] == 1
    assert not {rule for rule, _ in jobs} & {"demo_plate", "synth_training", "train_unet", "train_picker"}, jobs
    lint = snakemake(repo, repo, "--lint", configfile=False)
    assert "Congratulations" in lint.stdout + lint.stderr
    train = ["--configfile", str(repo / "config" / "demo-train.yaml")]
    jobs = planned_jobs(snakemake(repo, repo, "--dry-run", *train, configfile=False).stdout)
    assert jobs[("demo_plate", "")] == 1 and jobs[("train_unet", "")] == 1 and jobs[("evaluate", "ensemble")] == 1
    assert not (repo / "resources").exists() and not (repo / "results").exists()
