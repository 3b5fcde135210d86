"""How long Snakemake takes to plan a plate-sized run: ``snakemake -n`` on a generated 384-well x 9-field x
4-channel run of tiny files and on a no-op rerun of it (issue 16's DAG target: under 5 s on 2 idle cores), per
segmentation method, beside a workflow of trivial rules with as many jobs (Snakemake's own share).

Run from the repository root::

    .venv/bin/python bench/dag_scale.py                  # prints a Markdown table
    .venv/bin/python bench/dag_scale.py --write          # also replaces its section of bench/RESULTS.md

Each method is planned ``--repeats`` times (the median is reported) in a fresh folder; nothing runs.
Run it where SLURM is either absent or running (``tests/slurm/start_cluster.sh``): snakemake imports the SLURM
executor plugin at start, which waits for a configured but stopped controller.
"""
import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
SECTION = "## Planning a 384-well plate (snakemake -n)"


def write_run(folder: Path, rows: int = 16, columns: int = 24, fields: int = 9, channels: int = 4) -> int:
    """Tiny CellProfiler-named files of a plate; returns the file count."""
    from plateseg.io.naming import row_letter

    folder.mkdir(parents=True)
    pixel = np.zeros((8, 8), np.uint16)
    n = 0
    for r in range(1, rows + 1):
        for c in range(1, columns + 1):
            for f in range(1, fields + 1):
                for ch in range(1, channels + 1):
                    tifffile.imwrite(folder / f"P1_{row_letter(r)}{c:02d}_s{f}_w{ch}.tif", pixel)
                    n += 1
    return n


def _snakemake(work: Path, snakefile: Path, *extra: str) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds (user + system of the process) and output of one ``snakemake`` call."""
    cmd = [str(REPO / ".venv" / "bin" / "snakemake"), "--snakefile", str(snakefile), "--directory", str(work),
           "--cores", "2", *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return seconds, cpu, out.stdout + out.stderr


def plan(work: Path, snakefile: Path = REPO / "Snakefile") -> tuple[float, float, int]:
    """Wall and CPU seconds of one ``snakemake -n`` and the number of jobs it plans."""
    extra = ["--configfile", str(work / "config.yaml")] if (work / "config.yaml").is_file() else []
    seconds, cpu, text = _snakemake(work, snakefile, *extra, "-n", "--quiet", "rules")
    total = re.search(r"^total\s+(\d+)", text, re.M)
    return seconds, cpu, int(total.group(1)) if total else -1


def make_outputs(work: Path) -> int:
    """Create every output the plan names, empty, all with one modification time later than the inputs: the
    state of a finished run (without Snakemake's provenance records), so that ``snakemake -n`` is a no-op rerun.
    A path with no suffix or ending in ``.zarr`` is a directory output."""
    _, _, text = _snakemake(work, REPO / "Snakefile", "--configfile", str(work / "config.yaml"), "-n")
    paths = [p.strip() for m in re.finditer(r"^\s+output: (.+)$", text, re.M) for p in m.group(1).split(",")]
    now = time.time()
    for p in paths:
        path = work / p
        if path.suffix in ("", ".zarr"):
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    for p in paths:
        os.utime(work / p, (now, now))
    return len(paths)


def floor_workflow(folder: Path, wells: int, steps: int) -> None:
    """A workflow of nothing but ``wells`` chains of ``steps`` script rules (each with log, threads, a memory
    function, a params function, conda): what Snakemake itself takes to plan that many jobs, with none of
    plateseg's input functions, manifest or config."""
    folder.mkdir(parents=True)
    (folder / "s.py").write_text("pass\n")
    (folder / "env.yaml").write_text("dependencies: [python]\n")
    lines = [f'WELLS = [f"W{{i:04d}}" for i in range({wells})]', "",
             "def mem(base):", "    def _mem(wildcards, attempt):", "        return base * attempt", "    return _mem",
             "", "def meta(wildcards):", '    return {"well": wildcards.w}', "", "rule all:",
             f'    input: expand("out/{{w}}/s{steps - 1}.txt", w=WELLS)', ""]
    for k in range(steps):
        lines += [f"rule s{k}:"] + ([f'    input: "out/{{w}}/s{k - 1}.txt"'] if k else []) + [
            f'    output: "out/{{w}}/s{k}.txt"', f'    log: "logs/{{w}}/s{k}.log"', "    threads: 1",
            "    resources: mem_mb=mem(1000), runtime=10", '    params: meta=meta, code="abc"',
            '    conda: "env.yaml"', '    script: "s.py"', ""]
    (folder / "Snakefile").write_text("\n".join(lines))


def _median_runs(runs):
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs), [round(r[0], 2) for r in runs]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--methods", nargs="+", default=["classical", "ensemble"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--write", action="store_true", help="replace the section of bench/RESULTS.md")
    args = ap.parse_args(argv)
    from plateseg.machine import machine_info, machine_text

    start = machine_info(gpu=False)
    wells = 384
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        n_files = write_run(tmp / "images")
        config = yaml.safe_load((REPO / "config.yaml").read_text())
        config["input"]["dir"] = str(tmp / "images")
        config["channels"]["names"] = {"1": "DNA", "2": "ER", "3": "Mito", "4": "Actin"}
        config["evaluation"]["groundtruth"] = None
        config["evaluation"]["compare"] = []
        rows = []
        for method in args.methods:
            work = tmp / method
            work.mkdir()
            config["segmentation"]["method"] = method
            (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
            planned = [plan(work) for _ in range(args.repeats)]
            jobs = planned[0][2]
            make_outputs(work)
            noop = [plan(work) for _ in range(args.repeats)]
            if any(j != 0 and j != -1 for _, _, j in noop):
                raise SystemExit(f"{method}: the rerun after creating every output still plans {noop[0][2]} jobs")
            steps = max(1, round(jobs / wells))
            floor_workflow(tmp / f"floor_{method}", wells, steps)
            floor = [plan(tmp / f"floor_{method}", tmp / f"floor_{method}" / "Snakefile") for _ in range(args.repeats)]
            rows.append((method, jobs, _median_runs(planned), _median_runs(noop), wells * steps, _median_runs(floor)))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import snakemake_executor_plugin_slurm"], capture_output=True)
    plugin = time.perf_counter() - t0
    machine = machine_text(start, machine_info(gpu=False))
    table = "".join(
        f"| {m} | {j} | {p[0]:.2f} ({p[1]:.2f} CPU) | {n[0]:.2f} ({n[1]:.2f} CPU) | {fj} | {f[0]:.2f} ({f[1]:.2f} CPU) |\n"
        for m, j, p, n, fj, f in rows)
    met = all(p[0] < 5 and n[0] < 5 for _, _, p, n, _, _ in rows)
    text = (f"{n_files} files (384 wells x 9 fields x 4 channels, 8 x 8 px); median of {args.repeats} runs of "
            "`snakemake -n` (wall seconds, CPU seconds of the process in brackets) on the planned run, on a "
            "no-op rerun (every planned output created, empty, newer than the inputs; without Snakemake's "
            "provenance records, which a real finished run would also read), and on a workflow of nothing but "
            "the same number of jobs (`floor`: 384 chains of trivial script rules, each with log, threads, a "
            "memory function, a params function and conda, as ours have) -- what Snakemake "
            f"{_snakemake_version()} itself needs to plan that many jobs. "
            "`.venv/bin/python bench/dag_scale.py --write`:\n\n"
            "| method | jobs | `snakemake -n` s | no-op rerun s | floor jobs | floor s |\n"
            "| --- | --- | --- | --- | --- | --- |\n" + table
            + f"\nTarget (issue 16) under 5 s for both: **{'met' if met else 'not met'}**. The import of the SLURM "
            f"executor plugin alone took {plugin:.1f} s (snakemake imports every installed executor plugin; it "
            "asks the SLURM controller for its configuration, which waits where SLURM is installed but not "
            f"running). Machine: {machine}.\n")
    print(text)
    if args.write:
        path = REPO / "bench" / "RESULTS.md"
        body = path.read_text()
        block = f"{SECTION}\n\n{text}\n"
        if SECTION in body:
            begin = body.index(SECTION)
            nxt = body.find("\n## ", begin + len(SECTION))
            body = body[:begin] + block + (body[nxt + 1:] if nxt != -1 else "")
        else:
            body = body.rstrip("\n") + "\n\n" + block
        path.write_text(body)


def _snakemake_version() -> str:
    out = subprocess.run([str(REPO / ".venv" / "bin" / "snakemake"), "--version"], capture_output=True, text=True)
    return out.stdout.strip()


if __name__ == "__main__":
    main()
