"""Benchmark: segmentation block by block against the whole field (issue 16, seams and memory).

One synthetic field of dense touching nuclei (``synth_field(--seed, --size x --size, density --density,
cluster_fraction 0.6)``, 2 channels, uint16) in a real well store; each post-processing step of the workflow
labels it twice with the rules' own functions -- the whole field in one window (``block_size`` None) and
block by block (``--block`` px, halo ``--halo``, each nucleus kept by the block whose core holds its
centroid) -- and :func:`plateseg.evaluation.agreement.label_agreement` compares the two: whole-field nuclei
matched at IoU >= 0.9, nuclei split in pieces, extra objects (duplicates, fragments). The block runs are
repeated with each of ``--block-threads`` (the rules' threads: blocks run in parallel with dask,
:func:`plateseg.tiling.grid.map_windows`), whose labels must equal the first's array for array. Each run is its
own process, so its peak resident memory (``VmHWM``) is its own; the 1-minute load average is noted before each.

* **classical**: :func:`plateseg.pipeline.classical.classical_well` with the config's
  ``segmentation.classical`` (blocks: the whole field's threshold, :func:`plateseg.segment.classical.field_threshold`).
* **unet + watershed**: the shipped U-Net (``models/dsb2018-fluo``) predicts the maps once, tiled as in rule
  ``infer_unet``; :func:`plateseg.pipeline.watershed.watershed_well` with the set's watershed settings.
* **maskrcnn**: the shipped Mask R-CNN, :func:`plateseg.pipeline.infer.infer_well_instances` in tiles of
  ``--block`` against larger tiles (``--maskrcnn-reference``; no whole-field input is possible: torchvision pastes
  every mask at the window's size).
* **ensemble**: :func:`plateseg.pipeline.pick.pick_well` with the set's picker on the watershed's and the Mask
  R-CNN's candidates.
* **cells**: :func:`plateseg.pipeline.cells.cells_well` with the config's ``cells.propagation`` on the synthetic
  cytoplasm stain (``cell_channel``), seeded by the true nuclei (blocks: the field's stain levels, each pixel
  from its block's window).

Run from the repository root::

    .venv/bin/python bench/seams.py

Writes the sections ``## Seams: blocks against the whole field`` (classical, unet, cells, ensemble) and
``## Seams: Mask R-CNN tiles against larger tiles`` of ``bench/RESULTS.md`` -- each only when its methods ran
(``--methods``; the ensemble needs maskrcnn and unet) -- and ``agreement.csv``, ``run.log`` in ``--out`` (default
``bench/out/seams``).
"""
from __future__ import annotations

import argparse
import datetime as _dt
from pathlib import Path

from plateseg.pipeline.bench import bench_logging, command_text, relative_path, workflow_config, write_section

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Seams: blocks against the whole field"
MASKRCNN_SECTION = "## Seams: Mask R-CNN tiles against larger tiles"
METHODS = ("classical", "unet", "cells", "ensemble", "maskrcnn")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=4096, help="field edge, pixels")
    ap.add_argument("--density", type=float, default=2.5, help="synth_field density (1: 60 nuclei per 512 x 512)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--block", type=int, default=512, help="block edge, pixels")
    ap.add_argument("--halo", type=int, default=64, help="block halo, pixels")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the U-Net and the Mask R-CNN")
    ap.add_argument("--maskrcnn-reference", type=int, default=768,
                    help="Mask R-CNN's reference tile, px (its masks take detections x window pixels: tiles of 1,024 "
                         "px on this field needed over 21 GB)")
    ap.add_argument("--block-threads", type=int, nargs="+", default=[1, 2],
                    help="threads of the block runs (each a run of its own; the first is the reference)")
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS),
                    help="methods to run (the ensemble needs maskrcnn and unet); only their sections are written")
    ap.add_argument("--set-dir", default=str(REPO / "models" / "dsb2018-fluo"))
    ap.add_argument("--config", default=str(REPO / "config.yaml"))
    ap.add_argument("--out", default=str(REPO / "bench" / "out" / "seams"))
    ap.add_argument("--results", default=str(REPO / "bench" / "RESULTS.md"))
    return ap.parse_args(argv)


def _in_child(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` in a fresh process: ``(seconds, peak resident MB, CPU seconds of that process)``
    (Linux)."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(_timed, fn, args, kwargs).result()


def _maskrcnn(image, checkpoint, out, tile_size, halo, settings, threads=1):
    """Rule infer_maskrcnn's function on ``image`` with tiles of ``tile_size`` (its table beside ``out``), ``threads``
    torch threads."""
    import torch

    from plateseg.pipeline.infer import infer_well_instances

    torch.set_num_threads(threads)

    infer_well_instances(image, checkpoint, out, Path(str(out).replace(".zarr", ".parquet")), channels=[0],
                         tile_size=tile_size, halo=halo, batch_size=1, device="cpu", **settings)


def _pick(maps, unet, maskrcnn, picker, out, tile_size, settings, block_size=None, halo=64, threads=1):
    """Rule pick's function (the ensemble): labels at ``out``, picks table beside it."""
    from plateseg.pipeline.pick import pick_well

    pick_well(maps, unet, maskrcnn, Path(str(maskrcnn).replace(".zarr", ".parquet")), picker, out,
              Path(str(out).replace(".zarr", ".parquet")), tile_size=tile_size, block_size=block_size, halo=halo,
              threads=threads, **settings)


def _noop(*args, **kwargs):
    """Nothing: the baseline memory of a child process (interpreter and imports)."""


def _timed(fn, args, kwargs):
    import time

    t0, c0 = time.perf_counter(), time.process_time()
    fn(*args, **kwargs)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0  # CPU: all the process's threads
    # VmHWM: this process's own peak (ru_maxrss would carry the parent's over fork and exec)
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return seconds, int(status["VmHWM"].split()[0]) / 1024, cpu


def main(argv=None):
    args = parse_args(argv)
    if "ensemble" in args.methods and not {"maskrcnn", "unet"} <= set(args.methods):
        raise SystemExit("--methods ensemble needs maskrcnn and unet")
    out = Path(args.out)
    log = bench_logging(out, ("plateseg",))
    import os
    import shutil
    import time

    import numpy as np
    import pandas as pd
    import torch
    import yaml
    import zarr

    from plateseg.config.params import cell_settings, classical_settings
    from plateseg.engines.maskrcnn import CAP_AREA, PROPOSAL_THRESHOLD
    from plateseg.evaluation.agreement import label_agreement
    from plateseg.io.ngff import read_labels, write_well_image, write_well_labels
    from plateseg.io.synth import cell_channel, synth_field
    from plateseg.machine import machine_info, machine_text
    from plateseg.pipeline.cells import cells_well
    from plateseg.pipeline.classical import classical_well
    from plateseg.pipeline.infer import infer_well_maps
    from plateseg.pipeline.watershed import watershed_well

    torch.set_num_threads(args.threads)
    t0, machine = time.perf_counter(), machine_info()
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    image, truth = synth_field(args.seed, shape=(args.size, args.size), density=args.density, cluster_fraction=0.6)
    stain = cell_channel(truth, np.random.default_rng(args.seed + 100))[0]
    write_well_image(work / "image.zarr", {1: np.concatenate([image, stain[None]])}, ["DNA", "Marker", "Cyto"], 256,
                     0.65)
    write_well_labels(work / "nuclei.zarr", {1: truth}, tile_size=256)
    log.info("field %d x %d: %d true nuclei", args.size, args.size, int(truth.max()))
    del image, stain
    config = workflow_config(args.config)
    classical, cells = classical_settings(config), cell_settings(config)
    set_dir = Path(args.set_dir)
    watershed = dict(yaml.safe_load((set_dir / "settings.yaml").read_text())["watershed"])  # the set's settings
    watershed["mode"] = watershed.pop("markers")
    t_maps = time.perf_counter()
    if "unet" in args.methods:
        infer_well_maps(work / "image.zarr", set_dir / "unet.pt", work / "unet.zarr", channels=[0], halo=32,
                        batch_size=4, device="cpu", log=log)
    maps_seconds = time.perf_counter() - t_maps
    # Mask R-CNN: its windows are the model's input (torchvision pastes every detection's mask at the window's
    # full size, so a whole 4,096 px field is no possible input): tiles of --block against larger tiles
    set_settings = yaml.safe_load((set_dir / "settings.yaml").read_text())
    detection = dict(set_settings["maskrcnn"])
    mrcnn = {}
    for mode, tile in (("reference", args.maskrcnn_reference), ("blocks", args.block)) * ("maskrcnn" in args.methods):
        load = os.getloadavg()[0]
        mrcnn[mode] = (*_in_child(_maskrcnn, work / "image.zarr", set_dir / "maskrcnn.pt",
                                  work / f"maskrcnn_{mode}.zarr", tile, args.halo, detection, args.threads), load)
        log.info("maskrcnn, tiles of %d: %.1f s, peak %.0f MB, %.1f CPU s (load %.2f before)", tile, *mrcnn[mode])
    steps = {
        "classical": (classical_well, (work / "image.zarr",), dict(channel=0, settings=classical)),
        "unet + watershed": (watershed_well, (work / "unet.zarr",), dict(settings=watershed)),
        "cells": (cells_well, (work / "image.zarr", work / "nuclei.zarr"),
                  dict(cytoplasm_out=work / "cytoplasm.zarr", channel=2, settings=cells)),
        # the ensemble's candidates: the whole-field watershed (run above) and the Mask R-CNN of tiles of --block
        "ensemble": (_pick, (work / "unet.zarr", work / "unet_whole.zarr", work / "maskrcnn_blocks.zarr",
                             set_dir / "picker.json"), dict(settings=dict(set_settings["ensemble"]))),
    }
    steps = {name: step for name, step in steps.items() if name.split()[0] in args.methods}
    baseline_mb = _in_child(_noop)[1]
    rows, threads = [], list(args.block_threads)
    for name, (fn, inputs, kw) in steps.items():
        stem = name.split()[0]
        runs = {}
        blocks = dict(block_size=args.block, halo=args.halo)
        modes = [("whole", dict(block_size=None))] + [(f"blocks_{n}", dict(blocks, threads=n)) for n in threads]
        for mode, settings in modes:
            load = os.getloadavg()[0]
            runs[mode] = (*_in_child(fn, *inputs, work / f"{stem}_{mode}.zarr", tile_size=256, **kw, **settings), load)
            log.info("%s, %s: %.1f s, peak %.0f MB, %.1f CPU s (load %.2f before)", name, mode, *runs[mode])
        whole = read_labels(work / f"{stem}_whole.zarr", 1)
        blocked = read_labels(work / f"{stem}_blocks_{threads[0]}.zarr", 1)
        identical = all(np.array_equal(blocked, read_labels(work / f"{stem}_blocks_{n}.zarr", 1)) for n in threads[1:])
        # the nuclei's stores count seams and large objects; cells carry their nucleus's id (no ownership)
        stats = zarr.open_group(str(work / f"{stem}_blocks_{threads[0]}.zarr"), mode="r").attrs["plateseg"].get(
            "blocks", {}).get("1", {"on_seams": "-", "cut_by_halo": "-", "blocks": (-(-args.size // args.block)) ** 2})
        agreement = label_agreement(whole, blocked)
        rows.append({"method": name, **agreement, "on_seams": stats["on_seams"], "cut_by_halo": stats["cut_by_halo"],
                     "blocks": stats["blocks"], "identical_across_threads": identical,
                     "whole_seconds": runs["whole"][0], "whole_peak_mb": runs["whole"][1],
                     **{f"blocks_{n}t_{k}": runs[f"blocks_{n}"][i] for n in threads
                        for i, k in enumerate(("seconds", "peak_mb", "cpu_seconds", "load"))}})
        log.info("%s: %s", name, rows[-1])
    mrcnn_rows = []
    if mrcnn:
        reference = read_labels(work / "maskrcnn_reference.zarr", 1)
        mrcnn_rows = [{"method": "maskrcnn",
                       **label_agreement(reference, read_labels(work / "maskrcnn_blocks.zarr", 1)),
                       "reference_seconds": mrcnn["reference"][0], "reference_peak_mb": mrcnn["reference"][1],
                       "blocks_seconds": mrcnn["blocks"][0], "blocks_peak_mb": mrcnn["blocks"][1]}]
        log.info("maskrcnn: %s", mrcnn_rows[0])
    frame = pd.DataFrame(rows + mrcnn_rows)
    frame.to_csv(out / "agreement.csv", index=False)
    table = ["| method | objects (whole field) | matched IoU >= 0.9 | split | extra | across a seam | larger than the halo "
             "| whole: s / peak MB | blocks: s / peak MB |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        n = threads[0]
        table.append(f"| {r['method']} | {r['n_reference']} | {100 * r['matched_fraction']:.2f}% | {r['split']} | "
                     f"{r['extra']} | {r['on_seams']} | {r['cut_by_halo']} | {r['whole_seconds']:.0f} / "
                     f"{r['whole_peak_mb']:.0f} | {r[f'blocks_{n}t_seconds']:.0f} / {r[f'blocks_{n}t_peak_mb']:.0f} |")
    head = " | ".join(f"{n} thread{'s' if n > 1 else ''}: s / cores used / peak MB / load" for n in threads)
    speed = ["| method | " + head + " | speed-up | labels identical |", "|---|" + "---:|" * (len(threads) + 1) + "---|"]
    for r in rows:
        parts = " | ".join(f"{r[f'blocks_{n}t_seconds']:.1f} / "
                           f"{r[f'blocks_{n}t_cpu_seconds'] / r[f'blocks_{n}t_seconds']:.2f} / "
                           f"{r[f'blocks_{n}t_peak_mb']:.0f} / {r[f'blocks_{n}t_load']:.2f}" for n in threads)
        gain = r[f"blocks_{threads[0]}t_seconds"] / r[f"blocks_{threads[-1]}t_seconds"]
        speed.append(f"| {r['method']} | {parts} | {gain:.2f}x | {'yes' if r['identical_across_threads'] else 'NO'} |")
    window_px = (args.block + 2 * args.halo) ** 2
    text = f"""{SECTION}

A synthetic {args.size} x {args.size} field of dense touching nuclei (`synth_field` seed {args.seed}, density
{args.density:g}, cluster fraction 0.6: {int(truth.max())} nuclei), labelled by the workflow's functions once as
a whole and once in {(-(-args.size // args.block)) ** 2} blocks of {args.block} px with a halo of {args.halo} px (each nucleus kept,
whole, by the block whose core holds its centroid; sequential ids after). Compared object by object
(`plateseg.evaluation.agreement.label_agreement`): whole-field nuclei matched by a block nucleus at IoU >= 0.9,
nuclei split into pieces, extra objects; "across a seam" are the nuclei kept whole across a block border,
"larger than the halo" those reaching their window's edge. Peak resident memory of each run's own process
(an idle child process peaks at {baseline_mb:.0f} MB; the steps import numpy, scipy, scikit-image and zarr).
Classical: `{classical}`; U-Net maps by the shipped U-Net ({maps_seconds:.0f} s, tiled as in `infer_unet`),
watershed `{watershed}`; cells (seeded by the true nuclei, synthetic cytoplasm stain): `{cells}`, context of the
blocks {args.halo} px plus `max_distance`.

{chr(10).join(table)}

Blocks in parallel: the block runs again with the rule's threads {", ".join(map(str, threads))} (`threads` of
the rule functions: that many blocks at a time with dask's threaded scheduler, the next block's window read
meanwhile; `plateseg.tiling.grid.map_windows`). Wall time, cores used (the run's CPU time over its wall time:
the concurrency it got), peak memory and the 1-minute load average just before each run (when other jobs keep
the cores busy, the scheduler gives the run its share of them whatever its threads); speed-up
is the {threads[0]}-thread time over the {threads[-1]}-thread time; "labels identical": every run's labels equal the
{threads[0]}-thread run's array for array. A block window here is {args.block + 2 * args.halo} x
{args.block + 2 * args.halo} px ({window_px / 1e6:.2f} MP); each further thread holds one more window and its
intermediate arrays.

{chr(10).join(speed)}

The ensemble row picks among the whole-field watershed's nuclei and the Mask R-CNN instances of tiles of {args.block}
px (section "{MASKRCNN_SECTION[3:]}") with the set's picker (`{relative_path(set_dir / 'picker.json', REPO)}`,
`{set_settings['ensemble']}`), the whole field at once against block by block (the field-level picker features from
the whole field in both).

- Not covered here: measurement (run block by block too; its table equals the whole field's, and threads 3 the
  serial run's, in `tests/tiling/test_blockwise_seams.py`).
- Machine (measured by `plateseg.machine`): {machine_text(machine, machine_info())}. Date
  {_dt.date.today().isoformat()}; total {(time.perf_counter() - t0) / 60:.1f} min.
- Command: `{command_text("bench/seams.py", argv)}`; table: `{relative_path(out / 'agreement.csv', REPO)}`.
"""
    if rows:
        write_section(Path(args.results), text, SECTION)
    if mrcnn_rows:
        r = mrcnn_rows[0]
        write_section(Path(args.results), f"""{MASKRCNN_SECTION}

The field of section "{SECTION[3:]}" ({args.size} x {args.size} px, {int(truth.max())} nuclei) by the shipped
Mask R-CNN (`{relative_path(set_dir / 'maskrcnn.pt', REPO)}`, the set's detection settings `{detection}`, the
engine's RPN objectness floor {PROPOSAL_THRESHOLD:g} and caps per {CAP_AREA} px of window,
`plateseg.engines.maskrcnn.predict_instances`). Its windows are the model's input, and torchvision pastes every
detection's mask at its window's full size (detections x window pixels), so a whole {args.size} px field is no
possible input (tiles of 1,024 px needed over 21 GB here); instead the field in tiles of {args.block} px against
tiles of {args.maskrcnn_reference} px, both with a halo of {args.halo} px (each instance kept by the tile whose core
holds its centroid; one tile per forward pass): **{r['n_reference']} instances (tiles of
{args.maskrcnn_reference}), {100 * r['matched_fraction']:.2f}% matched at IoU >= 0.9, {r['split']} split,
{r['extra']} extra**; {mrcnn['reference'][0]:.0f} s / {mrcnn['reference'][1]:.0f} MB against
{mrcnn['blocks'][0]:.0f} s / {mrcnn['blocks'][1]:.0f} MB.

- Machine (measured by `plateseg.machine`): {machine_text(machine, machine_info())}. Date
  {_dt.date.today().isoformat()}; total {(time.perf_counter() - t0) / 60:.1f} min.
- Command: `{command_text("bench/seams.py", argv)}`; table: `{relative_path(out / 'agreement.csv', REPO)}`.
""", MASKRCNN_SECTION)
    shutil.rmtree(work, ignore_errors=True)
    log.info("wrote %s", args.results)


if __name__ == "__main__":
    main()
