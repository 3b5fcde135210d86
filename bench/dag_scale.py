"""How long Snakemake takes to plan a plate-sized run: ``snakemake -n`` on a generated 384-well x 9-field x
4-channel run of tiny files (issue 16's DAG target: under 5 s on 2 idle cores), per segmentation method.

Run from the repository root::

    .venv/bin/python bench/dag_scale.py                  # prints a Markdown table
    .venv/bin/python bench/dag_scale.py --write          # also replaces its section of bench/RESULTS.md

Each method is planned ``--repeats`` times (the median is reported) in a fresh folder; nothing runs.
"""
import argparse
import os
import re
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


def plan(work: Path, method: str) -> tuple[float, int]:
    """Seconds of one ``snakemake -n`` and the number of jobs it plans."""
    t0 = time.perf_counter()
    out = subprocess.run([str(REPO / ".venv" / "bin" / "snakemake"), "--snakefile", str(REPO / "Snakefile"),
                          "--directory", str(work), "--configfile", str(work / "config.yaml"), "-n", "--cores", "2",
                          "--quiet", "rules"], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"snakemake -n failed for {method}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    total = re.search(r"^total\s+(\d+)", out.stdout + out.stderr, re.M)
    return seconds, int(total.group(1)) if total else -1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--methods", nargs="+", default=["classical", "ensemble"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--write", action="store_true", help="replace the section of bench/RESULTS.md")
    args = ap.parse_args(argv)
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
            runs = [plan(work, method) for _ in range(args.repeats)]
            rows.append((method, runs[0][1], statistics.median(s for s, _ in runs), [round(s, 2) for s, _ in runs]))
    # snakemake imports every installed executor plugin at start; the SLURM plugin asks sacct about the cluster
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import snakemake_executor_plugin_slurm"], capture_output=True)
    plugin = time.perf_counter() - t0
    load = os.getloadavg()[0]
    text = (f"{n_files} files (384 wells x 9 fields x 4 channels, 8 x 8 px), `snakemake -n`, median of "
            f"{args.repeats}; load average {load:.1f} when it finished, {os.cpu_count()} cores "
            f"(`.venv/bin/python bench/dag_scale.py`):\n\n| method | jobs | seconds (median) | all runs |\n"
            "| --- | --- | --- | --- |\n" + "".join(f"| {m} | {j} | {s:.2f} | {r} |\n" for m, j, s, r in rows)
            + f"\nOf each run, {plugin:.1f} s is the import of the SLURM executor plugin alone (measured apart: "
            "`python -c 'import snakemake_executor_plugin_slurm'`; it queries `sacct` when it loads, which waits "
            "where SLURM is installed but its controller is not running).\n")
    print(text)
    if args.write:
        path = REPO / "bench" / "RESULTS.md"
        body = path.read_text()
        block = f"{SECTION}\n\n{text}\n"
        if SECTION in body:
            start = body.index(SECTION)
            nxt = body.find("\n## ", start + len(SECTION))
            body = body[:start] + block + (body[nxt + 1:] if nxt != -1 else "")
        else:
            body = body.rstrip("\n") + "\n\n" + block
        path.write_text(body)


if __name__ == "__main__":
    main()
