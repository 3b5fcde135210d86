"""Benchmark: peak memory of every job of the workflow on one whole-slide well, at two slide sizes (issue 16).

A 2-channel uint16 slide (tiled, zlib-compressed TIFFs, one per channel, CellProfiler names) is built by tiling a
synthetic 2048 x 2048 field (``synth_field``, never the whole slide in memory) to ``--sizes`` (default 10,000 and
20,000 px a side); the real workflow (``snakemake --cores 2``, the embedded config with the classical method: no
model inference, which is tiled by construction) runs on it, and every job's peak resident memory is read from
``/proc/<pid>/status`` (``VmHWM``, the process's own high-water mark) while it runs. The table gives each rule's
peak at both sizes and the growth between them; the issue asks for every job under 2 GB at 20,000 px and less than
20% growth from 10,000 to 20,000.

With ``--rgb`` the slide is one RGB uint8 file instead (tiled BigTIFF, samples interleaved, as an H&E slide is
stored; a regex name without a channel, so its samples are ingested as channels 1-3: the nuclear stain, the marker
and the nuclear stain inverted), measured into its own section ``## Whole-slide memory, RGB``.

Run from the repository root::

    .venv/bin/python bench/slide_memory.py [--rgb]

Writes the section ``## Whole-slide memory`` of ``bench/RESULTS.md`` and ``peaks.csv``, ``run.log`` in ``--out``
(default ``bench/out/slide_memory``, ``bench/out/slide_memory_rgb`` with ``--rgb``).

With ``--method`` (``ensemble``, ``unet``, ``maskrcnn``) the run segments with the shipped models instead (model
inference on the CPU: use smaller ``--sizes``, e.g. 5,000 and 10,000), into its own section
``## Whole-slide memory, <method>`` and ``bench/out/slide_memory_<method>``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import re
import subprocess
import time
from pathlib import Path

from plateseg.pipeline.bench import bench_logging, command_text, relative_path, write_section

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Whole-slide memory"
SCRIPT = re.compile(r"\.snakemake/scripts/tmp\w+\.(\w+)\.py")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10000, 20000], help="slide edges, pixels")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rgb", action="store_true", help="one RGB uint8 file (interleaved samples) as the slide")
    ap.add_argument("--method", default="classical", choices=["classical", "unet", "maskrcnn", "ensemble"],
                    help="segmentation.method of the run (the engines: the shipped set, inference on the CPU)")
    ap.add_argument("--out", default=None,
                    help="default bench/out/slide_memory (slide_memory_rgb with --rgb, slide_memory_<method>)")
    ap.add_argument("--results", default=str(REPO / "bench" / "RESULTS.md"))
    args = ap.parse_args(argv)
    name = "slide_memory" + ("_rgb" if args.rgb else "") + (f"_{args.method}" if args.method != "classical" else "")
    args.out = args.out or str(REPO / "bench" / "out" / name)
    return args


def write_slide(folder: Path, size: int, seed: int) -> None:
    """The slide's two channel files, tile by tile from one synthetic 2048 px field (tiled TIFF, zlib)."""
    import numpy as np
    import tifffile

    from plateseg.io.synth import synth_field

    base, _ = synth_field(seed, shape=(2048, 2048), density=1.0)
    folder.mkdir(parents=True, exist_ok=True)
    t = 512
    for ci in range(2):
        def tiles():
            for y in range(0, size, t):
                for x in range(0, size, t):
                    tile = np.zeros((t, t), np.uint16)
                    ys, xs = np.arange(y, y + t) % 2048, np.arange(x, x + t) % 2048
                    tile[:] = base[ci][np.ix_(ys, xs)]
                    yield tile
        tifffile.imwrite(folder / f"SLIDE_A01_s1_w{ci + 1}.tif", tiles(), shape=(size, size), dtype=np.uint16,
                         tile=(t, t), compression="zlib")


def write_rgb_slide(folder: Path, size: int, seed: int) -> None:
    """The slide as one RGB uint8 tiled BigTIFF (samples interleaved), tile by tile: the nuclear stain, the marker
    and the nuclear stain inverted, each scaled to 8 bits."""
    import numpy as np
    import tifffile

    from plateseg.io.synth import synth_field

    base, _ = synth_field(seed, shape=(2048, 2048), density=1.0)
    dna, marker = ((b.astype(np.float64) * 255 / max(int(b.max()), 1)).astype(np.uint8) for b in base[:2])
    rgb = np.stack([dna, marker, 255 - dna], axis=-1)
    folder.mkdir(parents=True, exist_ok=True)
    t = 512

    def tiles():
        for y in range(0, size, t):
            for x in range(0, size, t):
                ys, xs = np.arange(y, y + t) % 2048, np.arange(x, x + t) % 2048
                yield rgb[np.ix_(ys, xs)]
    tifffile.imwrite(folder / "SLIDE_A01_s1.tif", tiles(), shape=(size, size, 3), dtype=np.uint8, tile=(t, t),
                     photometric="rgb", compression="zlib", bigtiff=True)


def run_and_watch(workdir: Path, log) -> tuple[dict, float]:
    """Run snakemake in ``workdir``; ``({rule: peak MB}, seconds)`` of its script jobs, polled every 0.1 s."""
    cmd = [str(REPO / ".venv" / "bin" / "snakemake"), "--snakefile", str(REPO / "Snakefile"), "--directory",
           str(workdir), "--configfile", str(workdir / "config.yaml"), "--cores", "2"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=open(workdir / "snakemake.log", "w"), stderr=subprocess.STDOUT)
    peaks: dict[str, float] = {}
    here = workdir.resolve()
    while proc.poll() is None:
        for status in Path("/proc").glob("[0-9]*/status"):
            try:
                cmdline = (status.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                m = SCRIPT.search(cmdline)
                # only this run's jobs (they run in its folder), not another workflow's on the same machine
                if m and (status.parent / "cwd").resolve() == here:
                    hwm = next(line for line in status.read_text().splitlines() if line.startswith("VmHWM"))
                    peaks[m.group(1)] = max(peaks.get(m.group(1), 0.0), int(hwm.split()[1]) / 1024)
            except (OSError, StopIteration):  # the process ended meanwhile
                continue
        time.sleep(0.1)
    if proc.returncode:
        raise SystemExit(f"snakemake failed ({proc.returncode}); see {workdir / 'snakemake.log'}")
    seconds = time.perf_counter() - t0
    log.info("workflow in %s: %.0f s, peaks %s", workdir, seconds, {k: round(v) for k, v in peaks.items()})
    return peaks, seconds


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out)
    log = bench_logging(out)
    import shutil

    import pandas as pd
    import yaml

    from plateseg.machine import machine_info, machine_text

    t0, machine = time.perf_counter(), machine_info()
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    if args.rgb:  # a name without a channel: the file's samples are channels 1-3
        config["input"].update({"dir": "images", "scheme": "regex",
                                "pattern": r"(?P<plate>SLIDE)_(?P<well>A01)_s(?P<field>1)\.tif"})
        config["channels"]["names"] = {"1": "DNA", "2": "Marker", "3": "Inverted"}
    else:
        config["input"].update({"dir": "images", "scheme": "cellprofiler"})
        config["channels"]["names"] = {"1": "DNA", "2": "Marker"}
    config["demo"]["enabled"] = False
    config["segmentation"]["method"] = args.method
    config["evaluation"].update({"groundtruth": None, "compare": []})
    rows, seconds = {}, {}
    for size in args.sizes:
        work = out / f"slide_{size}"
        shutil.rmtree(work, ignore_errors=True)
        (write_rgb_slide if args.rgb else write_slide)(work / "images", size, args.seed)
        (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        rows[size], seconds[size] = run_and_watch(work, log)
        shutil.rmtree(work / "results", ignore_errors=True)
        shutil.rmtree(work / "images", ignore_errors=True)
    table = pd.DataFrame(rows).sort_index()
    table.index.name = "rule"
    table.to_csv(out / "peaks.csv")
    small, large = min(args.sizes), max(args.sizes)
    lines = [f"| rule | {' | '.join(f'{s:,} px: peak MB' for s in args.sizes)} | growth {small:,} -> {large:,} |",
             "|---|" + "---:|" * (len(args.sizes) + 1)]
    for rule, r in table.iterrows():
        growth = 100 * (r[large] / r[small] - 1)
        lines.append(f"| {rule} | {' | '.join(f'{r[s]:.0f}' for s in args.sizes)} | {growth:+.0f}% |")
    worst = table[large].idxmax()
    slide = ("one RGB uint8 slide (one tiled zlib BigTIFF, samples interleaved, ingested as 3 channels; a synthetic "
             "2048 px field repeated)" if args.rgb else
             "one 2-channel uint16 slide (tiled zlib TIFFs; a synthetic 2048 px field repeated)")
    section = SECTION + (", RGB" if args.rgb else "") + (f", {args.method}" if args.method != "classical" else "")
    engines = ("no model inference, which is tiled by construction" if args.method == "classical" else
               "the shipped models, inference on the CPU")
    text = f"""{section}

One well holding {slide} of
{', '.join(f'{s:,} x {s:,}' for s in args.sizes)} px, the workflow's embedded config with the {args.method} method
(`snakemake --cores 2`; {engines}). Peak resident memory of each job's
own process (`VmHWM`, polled every 0.1 s while it runs). Largest at {large:,} px: **{worst}**,
{table.loc[worst, large]:.0f} MB; largest growth: {table[large].div(table[small]).idxmax()}
({100 * (table[large].div(table[small]).max() - 1):+.0f}%). Workflow wall time:
{', '.join(f'{seconds[s] / 60:.1f} min at {s:,} px' for s in args.sizes)}.

{chr(10).join(lines)}

- Machine (measured by `plateseg.machine`): {machine_text(machine, machine_info())}. Date
  {_dt.date.today().isoformat()}; total {(time.perf_counter() - t0) / 60:.1f} min.
- Command: `{command_text("bench/slide_memory.py", argv)}`; table: `{relative_path(out / 'peaks.csv', REPO)}`.
"""
    write_section(Path(args.results), text, section)
    log.info("wrote %s", args.results)


if __name__ == "__main__":
    main()
