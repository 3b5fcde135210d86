"""Report a demo run: per-well nucleus counts against the truth, the evaluation of every label set, and the
Snakemake wall time of the run (read from its log in ``.snakemake/log``).

Run after the demo, from the repository root::

    .venv/bin/python bench/demo_counts.py                       # the real-image demo (make demo)
    .venv/bin/python bench/demo_counts.py results/DEMO resources/demo   # the synthetic-training demo

The truth is the demo folder's ``fields.csv`` (real-image demo) or ``groundtruth/truth.csv`` (synthetic).
Prints Markdown; with ``--write`` it also replaces the section ``## Demo plate (the embedded default config)``
of ``bench/RESULTS.md`` (only for the real-image demo). Exits 1 if a well's count is off by more than 10%.
"""
import argparse
import datetime as _dt
import re
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Demo plate (the embedded default config)"
KEYS = [("DSB mAP", "mean_dsb_map"), ("F1@0.5", "mean_f1_50"), ("P@0.7", "mean_precision_70"),
        ("R@0.7", "mean_recall_70"), ("Dice", "mean_dice")]


def snakemake_seconds(log_dir: Path):
    """Wall time of the newest Snakemake log: first to last ``[date]`` stamp, and its job count."""
    logs = sorted(log_dir.glob("*.snakemake.log"))
    if not logs:
        return None, None
    text = logs[-1].read_text()
    stamps = [_dt.datetime.strptime(s, "%a %b %d %H:%M:%S %Y") for s in re.findall(r"^\[(.+?)\]$", text, re.M)]
    jobs = re.search(r"(\d+) of (\d+) steps \(100%\) done", text)
    return ((stamps[-1] - stamps[0]).total_seconds() if len(stamps) > 1 else None), (jobs.group(2) if jobs else None)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", nargs="?", default="results/DSB")
    ap.add_argument("demo", nargs="?", default="demo/dsb2018-fluo")
    ap.add_argument("--write", action="store_true", help="write the section of bench/RESULTS.md")
    args = ap.parse_args(argv)
    results, demo = Path(args.results), Path(args.demo)
    summary = pd.read_csv(results / "plate_summary.csv")
    if (demo / "fields.csv").is_file():
        truth = pd.read_csv(demo / "fields.csv").groupby("well")["n_nuclei"].sum()
    else:
        truth = pd.read_csv(demo / "groundtruth" / "truth.csv").groupby("well")["n_nuclei"].sum()
    table = summary[["Metadata_Well", "Count_Nuclei"]].copy()
    table["true"] = table["Metadata_Well"].map(truth)
    table["error_%"] = (100 * (table["Count_Nuclei"] - table["true"]) / table["true"]).round(1)
    counts = "| well | counted | true | error % |\n|---|---:|---:|---:|\n" + "".join(
        f"| {r.Metadata_Well} | {r.Count_Nuclei} | {r.true} | {r._4:+.1f} |\n" for r in table.itertuples())
    rows = []
    for ev in sorted((results / "evaluation").glob("*.csv")):
        if not ev.stem.endswith("_fields"):
            row = pd.read_csv(ev).iloc[0]
            rows.append((ev.stem, row))
    rows.sort(key=lambda r: -r[1]["mean_dsb_map"])
    evaluation = ("| label set | fields | " + " | ".join(k for k, _ in KEYS) + " |\n|---|---:|" + "---:|" * len(KEYS)
                  + "\n" + "".join(f"| {name} | {int(row['n_fields'])} | " + " | ".join(f"{row[c]:.3f}" for _, c in KEYS)
                                   + " |\n" for name, row in rows))
    worst = table["error_%"].abs().max()
    seconds, jobs = snakemake_seconds(Path(".snakemake") / "log")
    print(counts + "\n" + evaluation + f"\nworst well count error: {worst:.1f}%")
    if seconds is not None:
        print(f"Snakemake: {seconds:.0f} s, {jobs} jobs")
    if args.write:
        from plateseg.machine import machine_info, machine_text
        from plateseg.pipeline.bench import write_section

        best = rows[0][0]
        text = f"""{SECTION}

`make demo` on the embedded `config.yaml`: the shipped set `models/dsb2018-fluo` (no training) on the real-image
demo plate `demo/dsb2018-fluo` ({len(table)} wells, {int(rows[0][1]['n_fields'])} fields of DSB2018 fluorescence
nuclei that no file of the set saw, with their ground truth). Snakemake: **{seconds:.0f} s** ({jobs} jobs), read
from its log; the set-up of `.venv` is not included. Machine (measured by `plateseg.machine` when this report was written):
{machine_text(machine_info())}. Date {_dt.date.today().isoformat()}. Report: `.venv/bin/python bench/demo_counts.py --write`.

Evaluation (`results/DSB/evaluation/{{labelset}}.csv`; means over fields; DSB mAP with IoU > t), best first
(**{best}**):

{evaluation}
Per-well nucleus counts of the final labels against the truth (worst well {worst:.1f}%):

{counts}"""
        write_section(REPO / "bench" / "RESULTS.md", text, SECTION)
    return 0 if worst <= 10 else 1


if __name__ == "__main__":
    sys.exit(main())
