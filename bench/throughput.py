"""Benchmark: throughput of every step on one well, and the inference rules' overhead over their bare model (issue 16).

One synthetic well (``--fields`` fields of ``--size`` px, 2 channels, ``synth_field`` density 1.5, written as
TIFFs) goes through the workflow's own functions with the shipped set ``models/dsb2018-fluo`` and the embedded
config's tiling and batch size, each timed in this process: ingest, U-Net maps (``infer_unet``), Mask R-CNN
instances (``infer_maskrcnn``), watershed, classical, pick, measure and the HCS well. Megapixels per second are
the well's pixels over the step's wall time.

Overhead: right after each inference step, the bare model runs the same forward passes -- the same windows
(read and normalised beforehand, outside the timing), batch size, device and threads -- and the step's wall time
is divided by the bare passes' (the issue asks for at most 1.2). The difference is reading tiles, blending or
ownership, and writing the stores.

Run from the repository root::

    .venv/bin/python bench/throughput.py

Writes the section ``## Throughput`` of ``bench/RESULTS.md`` and ``steps.csv``, ``run.log`` in ``--out`` (default
``bench/out/throughput``). CUDA paths (autocast, channels_last) are not measured here when there is no GPU.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import time
from pathlib import Path

from plateseg.pipeline.bench import bench_logging, command_text, relative_path, workflow_config, write_section

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Throughput"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fields", type=int, default=4)
    ap.add_argument("--size", type=int, default=1024, help="field edge, pixels")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--set-dir", default=str(REPO / "models" / "dsb2018-fluo"))
    ap.add_argument("--config", default=str(REPO / "config.yaml"))
    ap.add_argument("--out", default=str(REPO / "bench" / "out" / "throughput"))
    ap.add_argument("--results", default=str(REPO / "bench" / "RESULTS.md"))
    return ap.parse_args(argv)


def bare_seconds(forward, model, meta, image_store, channel: int, tile: int, halo: int, batch: int, pad: bool):
    """Seconds of ``forward(model, windows)`` over the windows the tiled step feeds the model (all fields),
    the windows read and normalised beforehand."""
    import numpy as np

    from plateseg.engines.base import field_reader
    from plateseg.io.ngff import list_fields, open_field
    from plateseg.tiling.grid import TileSchedule

    total = 0.0
    for field in list_fields(image_store):
        read, shape = field_reader(meta, open_field(image_store, field), [channel])
        sched = TileSchedule(shape, tile, halo)
        for ids in sched.batches(batch):
            windows = [read(sched.tiles[j].read) for j in ids]
            if pad:  # blended maps feed uniform windows (reflect-padded at the field edge)
                windows = [np.pad(w, ((0, 0),) + sched.tiles[j].pad, mode="reflect") for w, j in zip(windows, ids)]
            t0 = time.perf_counter()
            forward(model, windows)
            total += time.perf_counter() - t0
    return total


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out)
    log = bench_logging(out, ("plateseg",))
    import shutil

    import numpy as np
    import pandas as pd
    import tifffile
    import torch
    import yaml

    from plateseg.config.params import classical_settings
    from plateseg.engines import maskrcnn, unet
    from plateseg.io.hcs import write_hcs_well
    from plateseg.io.ingest import ingest_well
    from plateseg.io.synth import synth_field
    from plateseg.machine import machine_info, machine_text
    from plateseg.pipeline.classical import classical_well
    from plateseg.pipeline.infer import infer_well_instances, infer_well_maps
    from plateseg.pipeline.measure import measure_objects
    from plateseg.pipeline.pick import pick_well
    from plateseg.pipeline.watershed import watershed_well

    torch.set_num_threads(args.threads)
    t_start, machine = time.perf_counter(), machine_info()
    config = workflow_config(args.config)
    tile, halo, batch = config["tiling"]["tile_size"], config["tiling"]["halo"], config["inference"]["batch_size"]
    set_dir = Path(args.set_dir)
    settings = yaml.safe_load((set_dir / "settings.yaml").read_text())
    watershed = dict(settings["watershed"])
    watershed["mode"] = watershed.pop("markers")
    detection = settings["maskrcnn"]
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)
    (work / "tif").mkdir(parents=True)
    files = []
    for f in range(1, args.fields + 1):
        image, _ = synth_field(f, shape=(args.size, args.size), density=1.5)
        for c in range(2):
            path = work / "tif" / f"W_A01_s{f}_w{c + 1}.tif"
            tifffile.imwrite(path, image[c], tile=(256, 256), compression="zlib")
            files.append({"field": f, "channel": str(c + 1), "path": str(path)})
    pixels = args.fields * args.size ** 2
    img = work / "image.zarr"
    steps = {}

    def timed(name, fn, *a, **kw):
        t0 = time.perf_counter()
        fn(*a, **kw)
        steps[name] = time.perf_counter() - t0
        log.info("%s: %.1f s, %.2f MP/s", name, steps[name], pixels / 1e6 / steps[name])

    timed("ingest", ingest_well, files, {"1": "DNA", "2": "Marker"}, img, tile, 0.65)
    timed("infer_unet", infer_well_maps, img, set_dir / "unet.pt", work / "unet.zarr", channels=[0], tile_size=tile,
          halo=halo, batch_size=batch, device="cpu")
    model, meta = unet.load_checkpoint(set_dir / "unet.pt", "cpu")
    model.eval()

    def unet_forward(model, windows):
        with torch.inference_mode():
            torch.sigmoid(model(torch.from_numpy(np.stack(windows).astype(np.float32))))

    bare = {"infer_unet": bare_seconds(unet_forward, model, meta, img, 0, tile, halo, batch, pad=True)}
    timed("infer_maskrcnn", infer_well_instances, img, set_dir / "maskrcnn.pt", work / "maskrcnn.zarr",
          work / "maskrcnn.parquet", channels=[0], tile_size=tile, halo=halo, batch_size=batch, device="cpu",
          score_threshold=detection["score_threshold"], mask_threshold=detection["mask_threshold"],
          min_area=detection["min_area"])
    model, meta = maskrcnn.load_checkpoint(set_dir / "maskrcnn.pt", "cpu")
    model.eval()
    model.roi_heads.score_thresh = max(float(model.roi_heads.score_thresh), float(detection["score_threshold"]))

    def maskrcnn_forward(model, windows):
        with torch.inference_mode():
            model([torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32)) for w in windows])

    bare["infer_maskrcnn"] = bare_seconds(maskrcnn_forward, model, meta, img, 0, tile, halo, batch, pad=False)
    del model
    timed("watershed", watershed_well, work / "unet.zarr", work / "unet_labels.zarr", watershed, tile_size=tile)
    timed("segment_classical", classical_well, img, work / "classical.zarr", 0, classical_settings(config),
          tile_size=tile)
    timed("pick", pick_well, work / "unet.zarr", work / "unet_labels.zarr", work / "maskrcnn.zarr",
          work / "maskrcnn.parquet", set_dir / "picker.json", work / "ensemble.zarr", work / "picks.parquet",
          min_iou=settings["ensemble"]["min_iou"], nms_iou=settings["ensemble"]["nms_iou"], tile_size=tile)
    timed("measure", measure_objects, img, work / "ensemble.zarr", work / "objects.parquet", {"Metadata_Well": "A01"},
          picks=work / "picks.parquet")
    timed("hcs_well", write_hcs_well, img, {"nuclei": work / "ensemble.zarr", "unet": work / "unet_labels.zarr",
                                             "maskrcnn": work / "maskrcnn.zarr"}, work / "plate.zarr" / "A" / "1",
          "A", 1, tile)
    rows = [{"step": k, "seconds": v, "mp_per_s": pixels / 1e6 / v, "bare_seconds": bare.get(k),
             "overhead": v / bare[k] if k in bare else None} for k, v in steps.items()]
    pd.DataFrame(rows).to_csv(out / "steps.csv", index=False)
    lines = ["| step | wall s | MP/s | bare model s | step / bare model |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        extra = (f"{r['bare_seconds']:.1f} | **{r['overhead']:.2f}**" if r["overhead"] is not None else "- | -")
        lines.append(f"| {r['step']} | {r['seconds']:.1f} | {r['mp_per_s']:.2f} | {extra} |")
    text = f"""{SECTION}

One well of {args.fields} synthetic fields of {args.size} x {args.size} px (2 channels, uint16; {pixels / 1e6:.1f} MP)
through the workflow's functions with the shipped set, tiles of {tile} px with a halo of {halo}, batches of {batch},
on the CPU with {args.threads} torch thread(s). "step / bare model": the step's wall time over the bare model's
forward passes on the same windows (read and normalised beforehand), measured right after it in the same process.

{chr(10).join(lines)}

- CUDA (bf16/fp16 autocast, channels_last, pinned transfers) is not measured: no GPU on this machine.
- Machine (measured by `plateseg.machine`): {machine_text(machine, machine_info())}. Date
  {_dt.date.today().isoformat()}; total {(time.perf_counter() - t_start) / 60:.1f} min.
- Command: `{command_text("bench/throughput.py", argv)}`; table: `{relative_path(out / 'steps.csv', REPO)}`.
"""
    write_section(Path(args.results), text, SECTION)
    shutil.rmtree(work, ignore_errors=True)
    log.info("wrote %s", args.results)


if __name__ == "__main__":
    main()
