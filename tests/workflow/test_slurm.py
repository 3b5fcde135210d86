"""The demo plate through `--profile profiles/slurm` on a real single-node SLURM (tests/slurm/).

.ci/run starts the cluster and sets PLATESEG_REQUIRE_SLURM=1, so there the test fails instead of
skipping when SLURM is not usable. Locally it is skipped with the reason when no SLURM answers.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from support import REPO, dry_run_jobs, run_snakemake, tiny_config

pytestmark = [pytest.mark.slurm, pytest.mark.workflow]

VENV_BIN = str(Path(sys.executable).parent)


def _slurm_ready() -> str | None:
    """None if a SLURM cluster with an idle node answers, else the reason why not."""
    if shutil.which("sinfo") is None:
        return "no SLURM here (sinfo not found); start one with tests/slurm/start_cluster.sh (root, Debian)"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except (subprocess.TimeoutExpired, OSError) as err:
        return f"sinfo failed: {err}"
    if out.returncode != 0 or not re.search(r"idle|mix|alloc", out.stdout):
        return f"no usable SLURM node (sinfo: {out.stdout.strip() or out.stderr.strip()}); run tests/slurm/start_cluster.sh"
    return None


@pytest.fixture(scope="module")
def slurm():
    reason = _slurm_ready()
    if reason:
        if os.environ.get("PLATESEG_REQUIRE_SLURM") == "1":
            pytest.fail(f"PLATESEG_REQUIRE_SLURM=1 but {reason}")
        pytest.skip(reason)
    partition = subprocess.run(["sinfo", "-h", "-o", "%R"], capture_output=True, text=True).stdout.split()[0]
    return partition.rstrip("*")


def _profile() -> dict:
    import yaml

    return yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())


def _gpu_rules() -> list[str]:
    """Rules the profile gives a GPU: the test cluster has none, so the test overrides them to gpu=0."""
    return [rule for rule, res in _profile().get("set-resources", {}).items() if res.get("gpu")]


def run_on_slurm(workdir: Path, partition: str, *extra: str, check: bool = True):
    overrides = [f"{rule}:gpu=0" for rule in _gpu_rules()]
    overrides += [f"{rule}:slurm_partition={partition}" for rule in _gpu_rules()]
    env_path = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ["PATH"] = env_path  # jobs run with sbatch --export=ALL
    return run_snakemake(
        workdir,
        "--profile", str(REPO / "profiles" / "slurm"),
        "--default-resources", f"slurm_partition={partition}", "mem_mb=500", "runtime=30",
        "--set-resources", *overrides,
        "--slurm-status-command", "squeue",
        "--slurm-init-seconds-before-status-checks", "1",
        "--slurm-keep-successful-logs",
        "--jobs", "2",
        "--latency-wait", "5",
        *extra,
        check=check,
    )


def _submissions(workdir: Path) -> dict[str, list[str]]:
    """SLURM job ids per log folder (rule_<rule> or group_<group>_...) of the executor plugin."""
    out: dict[str, list[str]] = {}
    root = workdir / ".snakemake" / "slurm_logs"
    for log in root.rglob("*.log"):
        top = log.relative_to(root).parts[0]
        out.setdefault(top, []).append(log.stem)
    return out


def _planned(workdir: Path) -> list[tuple[str, str]]:
    """(rule, well or '') of every job a dry run plans (an HCS plate well's job is given its well)."""
    jobs = dry_run_jobs(run_snakemake(workdir, "--dry-run").stdout).elements()
    return [(rule, key if re.fullmatch(r"[A-Z]+[0-9]+", key) else "") for rule, key in jobs]


def _work_with_local_models(tmp_path: Path, trained_plate: Path) -> Path:
    """A copy of ``trained_plate``'s run and config in ``tmp_path/cluster``, with the models its local run trained
    given as ``models.source: pretrained`` files (the cluster runs inference and tables, not training)."""
    run = tmp_path / "run"
    shutil.copytree(trained_plate / "run", run)
    work = tmp_path / "cluster"
    (work / "models").mkdir(parents=True)
    trained = trained_plate / "work" / "results" / "models"
    for engine in ("unet", "maskrcnn"):
        shutil.copy(trained / engine / "all.pt", work / "models" / f"{engine}.pt")
    shutil.copy(trained / "picker" / "picker.json", work / "models" / "picker.json")
    tiny_config(work, run, **{"models.source": "pretrained", "models.unet": "models/unet.pt",
                              "models.maskrcnn": "models/maskrcnn.pt", "models.picker": "models/picker.json"})
    return work


def test_demo_plate_on_slurm_fails_one_job_resubmits_only_it_and_matches_local_run(slurm, tmp_path, trained_plate):
    # the images of the local run of ``trained_plate`` and the models it trained (paths relative to the work folder)
    cluster, local = _work_with_local_models(tmp_path, trained_plate), trained_plate / "work"
    planned = _planned(cluster)
    local_rules = {"plate_summary", "plate_qc", "hcs_row", "hcs_plate", "training_curves"}
    grouped = {rule for rule, group in _profile()["groups"].items() if group == "wellpost"}
    assert grouped & {r for r, _ in planned}, "the demo plate runs no grouped rule"

    # first run: a raw file of well A02 is broken, so A02's ingest fails on the cluster
    raw = tmp_path / "run" / "images" / "DEMO_A02_s1_w2.tif"
    good = raw.read_bytes()
    raw.write_bytes(b"this is not a tiff")
    t0 = time.monotonic()
    proc = run_on_slurm(cluster, slurm, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    failed_log = re.search(r"(\S*slurm_logs/rule_ingest/DEMO_A02/\d+\.log)", out)
    assert failed_log, out[-3000:]
    log_path = Path(failed_log.group(1))
    log_path = log_path if log_path.is_absolute() else cluster / log_path
    assert "DEMO_A02_s1_w2.tif" in log_path.read_text()  # the log names the broken file
    assert (cluster / "results" / "DEMO" / "wells" / "A01.csv").is_file()  # the other well went on
    assert not (cluster / "results" / "DEMO" / "wells" / "A02.csv").exists()
    first = _submissions(cluster)
    retries = int(_profile()["retries"])
    assert len(first["rule_ingest"]) == 2 + retries  # A01's ingest, and A02's tried 1 + retries times
    shutil.move(cluster / ".snakemake" / "slurm_logs", tmp_path / "slurm_logs_first_run")

    # the file mended, the rerun plans and submits only what is missing: A02's jobs
    raw.write_bytes(good)
    missing = _planned(cluster)
    assert {w for _, w in missing if w} == {"A02"} and "ingest" in {r for r, _ in missing}
    run_on_slurm(cluster, slurm)
    t_cluster = time.monotonic() - t0
    second = _submissions(cluster)
    assert len(second.get("rule_ingest", [])) == 1

    subs = {key: first.get(key, []) + second.get(key, []) for key in first.keys() | second.keys()}
    job_ids = [j for ids in subs.values() for j in ids]
    assert all(j.isdigit() for j in job_ids) and len(set(job_ids)) == len(job_ids)
    # over both runs every non-local, non-grouped job was its own SLURM job, once (the failed ingest 2 + retries times)
    for rule in {r for r, _ in planned} - local_rules - grouped:
        n = sum(1 for r, _ in planned if r == rule) + (1 + retries) * (rule == "ingest")
        assert len(subs.get(f"rule_{rule}", [])) == n, (rule, subs)
    # the grouped post-processing of each well went out as one submission per well
    wells = {w for r, w in planned if r in grouped}
    group_logs = [ids for key, ids in subs.items() if key.startswith("group_wellpost")]
    assert sum(len(ids) for ids in group_logs) == len(wells)
    assert not any(key.startswith(("rule_plate_summary", "rule_plate_qc")) for key in subs)
    n_without_grouping = sum(1 for r, _ in planned if r not in local_rules) + 1 + retries
    assert len(job_ids) < n_without_grouping
    print(f"SLURM submissions: {len(job_ids)} with grouping, {n_without_grouping} without")

    # the SLURM job ids are the ones SLURM knows about
    known = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i"], capture_output=True, text=True).stdout.split()
    assert set(job_ids) <= set(known)

    print(f"wall time: both SLURM runs {t_cluster:.0f} s")
    # inference and tables on the cluster with the local run's models give the local run's tables, to the byte
    csvs = sorted((local / "results" / "DEMO" / "wells").glob("*.csv"))
    assert len(csvs) >= 4
    for csv in csvs + [local / "results" / "DEMO" / "plate_summary.csv"]:
        other = cluster / csv.relative_to(local)
        pd.testing.assert_frame_equal(pd.read_csv(other), pd.read_csv(csv), check_exact=True)
