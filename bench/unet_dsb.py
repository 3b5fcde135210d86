"""Benchmark: U-Net (boundary / centre watershed) vs the classical baseline on DSB2018 fluo.

Acceptance of issue 3. Loads ``data/dsb2018/fluo`` with :func:`plateseg.io.annotated.load_annotated`,
splits it with ``grouped_folds(k, seed=0)``, holds out one fold for the test, and from the other
folds carves a small grouped validation split (used only to pick watershed thresholds; the U-Net
does not train on it). The U-Net trains on the rest on CPU within ``--budget-minutes`` of wall
time (warm-up timing -> number of steps; plus a hard stop at an epoch boundary if contention makes
it slower than estimated). The classical baseline's settings are chosen by a small grid on
training-fold images. Everything is evaluated with :func:`plateseg.evaluation.metrics.evaluate_dataset`
(tie rule "gt": a match needs IoU > t, the Kaggle DSB2018 rule) on the held-out fold, and a
Markdown section ``## U-Net on DSB2018 fluo`` is written (or replaced) in ``bench/RESULTS.md``.

Run from the repository root::

    .venv/bin/python bench/unet_dsb.py --budget-minutes 45

Outputs in ``--out`` (default ``bench/out/unet_dsb``): ``unet.pt`` (checkpoint), ``metrics.csv``
(one row per method), ``per_image_<method>.csv``, ``history.csv``, ``run.json``, ``run.log``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import itertools
import json
import time
from pathlib import Path

from plateseg.pipeline.bench import (chunk_text, command_text, common_args, dsb_split, evaluate_methods, object_scores,
                                     relative_path, start_run, table_markdown, train_in_chunks, workflow_config,
                                     write_section)

REPO = Path(__file__).resolve().parents[1]
SECTION = "## U-Net on DSB2018 fluo"


def parse_args(argv=None):
    ap = common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]), "unet_dsb", REPO)
    ap.add_argument("--budget-minutes", type=float, default=45.0,
                    help="wall-time budget of U-Net training (warm-up included)")
    ap.add_argument("--encoder", default="resnet18")
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup-steps", type=int, default=50)
    ap.add_argument("--epoch-steps", type=int, default=40,
                    help="optimizer steps per (logged) epoch; the budget check happens between epochs")
    ap.add_argument("--first-chunk-steps", type=int, default=120,
                    help="steps of the first training chunk (also measures the speed)")
    ap.add_argument("--min-chunk-steps", type=int, default=120,
                    help="do not start a further chunk shorter than this")
    ap.add_argument("--classical-images", type=int, default=40,
                    help="training-fold images used for the classical settings grid")
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--halo", type=int, default=32)
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: subsample the held-out fold (20 images), validation (10) and grid (15)")
    return ap.parse_args(argv)


# --------------------------------------------------------------------------- classical
CLASSICAL_GRID = {
    "sigma": [0.5, 1.0, 2.0],
    "min_distance": [3, 5, 8, 12],
    "threshold": ["otsu", "li"],
}


def tune_classical(images, masks, log):
    from plateseg.segment.classical import segment_classical
    from plateseg.evaluation.metrics import dsb_map_dataset

    best, table = None, []
    keys = list(CLASSICAL_GRID)
    for combo in itertools.product(*CLASSICAL_GRID.values()):
        s = dict(zip(keys, combo))
        preds = [segment_classical(im[0], **s) for im in images]
        score = dsb_map_dataset(zip(masks, preds), tie="gt")
        table.append({**s, "dsb_map": score})
        log.info("classical grid %s -> mAP %.4f", s, score)
        if best is None or score > best[1]:
            best = (s, score)
    return best[0], best[1], table


# --------------------------------------------------------------------------- watershed
BOUNDARY_GRID = {
    "fg_threshold": [0.4, 0.5, 0.6, 0.7],
    "boundary_threshold": [0.2, 0.3, 0.5, 0.7],
    "min_area": [10, 20],
}
CENTRE_GRID = {
    "fg_threshold": [0.4, 0.5, 0.6, 0.7],
    "peak_threshold": [0.1, 0.2, 0.3, 0.45],
    "peak_min_distance": [2, 3, 5],
    "min_area": [10, 20],
}


def tune_watershed(maps_list, masks, mode, grid, log):
    from plateseg.evaluation.metrics import dsb_map_dataset
    from plateseg.segment.watershed import instances_from_maps

    best, table = None, []
    keys = list(grid)
    for combo in itertools.product(*grid.values()):
        s = dict(zip(keys, combo))
        preds = [instances_from_maps(m, mode=mode, **s) for m in maps_list]
        score = dsb_map_dataset(zip(masks, preds), tie="gt")
        table.append({"mode": mode, **s, "dsb_map": score})
        if best is None or score > best[1]:
            best = (s, score)
    log.info("watershed %s: best %s -> validation mAP %.4f", mode, best[0], best[1])
    return best[0], best[1], table


# --------------------------------------------------------------------------- report
def markdown_section(rows, ctx) -> str:
    table = table_markdown(rows)
    c = ctx
    tr = c["train"]
    smoke = ("\n**SMOKE RUN** (`--quick`, tiny budget): numbers are not the benchmark.\n"
             if c["quick"] else "")
    return f"""{SECTION}
{smoke}
Held-out grouped fold {c['fold']} of {c['k']} (`grouped_folds(k={c['k']}, seed=0)`, groups
derived by `derive_groups`): **{c['n_test']} images, {c['n_test_objects']} nuclei**
({c['n_folds_total']} images in all). Metrics from `plateseg.evaluation.metrics.evaluate_dataset` with
`tie="gt"`: a match needs IoU **>** t (Kaggle DSB2018 rule); DSB mAP = mean over images of the
mean over t = 0.50:0.05:0.95 of TP/(TP+FP+FN). F1@0.5 and P/R@0.7 are pooled over all objects
of the fold (sums of TP/FP/FN); Dice is the mean per-image foreground Dice; over/under are
summed over images (IoP/IoG fraction 0.5, seed 004). COCO AP/AP50/AP75 are pycocotools-equivalent
(IoU >= t, max 1000 detections per image) over the whole fold; U-Net objects are ranked by
their mean foreground probability, classical objects all score 1 (ranked by label id).

{table}

- **classical**: `segment_classical` on the grayscale image with {c['classical_settings']}
  (best DSB mAP {c['classical_grid_map']:.3f} of a {c['classical_grid_n']}-setting grid over
  sigma {CLASSICAL_GRID['sigma']}, min_distance {CLASSICAL_GRID['min_distance']}, threshold
  {CLASSICAL_GRID['threshold']} on {c['n_grid']} training-fold images; other settings default).
- **unet-boundary / unet-centre**: one U-Net, instances by `instances_from_maps` with markers
  from foreground minus boundary, or from centre-heatmap peaks. Thresholds chosen on a grouped
  validation split of the training folds ({c['n_val']} images, not trained on):
  boundary {c['ws_boundary']} (val mAP {c['ws_boundary_val']:.3f}); centre {c['ws_centre']}
  (val mAP {c['ws_centre_val']:.3f}). Mode "points" needs Mask R-CNN centroids, which do not
  exist yet, so it is not benchmarked.
- **U-Net training**: {c['n_train']} training images; smp U-Net, encoder {c['encoder']} from
  scratch, crop {c['crop']} px, batch {c['batch']}, AdamW lr {c['lr']:g} with {c['warmup']}
  warm-up steps then cosine to 5%, the other settings those of the workflow config
  (`{c['config']}` with the schema's defaults, through `plateseg.config.params.unet_settings`):
  {c['settings']}. Budget {c['budget']:g} min of wall time, trained in chunks (each a
  `train_unet` call with warm-up + cosine, continuing from the previous chunk's weights; chunk 1
  measures the speed, later chunks fill the remaining budget; peak lr halved from chunk 3):
  {c['chunk_text']}. **Done {tr['done_steps']} steps ({tr['done_steps'] * c['batch']} crops) in
  {tr['train_seconds'] / 60:.1f} min**{' - STOPPED EARLY by the budget guard' if tr['stopped_by_guard'] else ''}; final
  training loss {tr['final_loss']:.4f}. No validation during training.
- **Inference**: `predict_maps` tiled, tile {c['tile']} + halo {c['halo']} (trim halo/2), CPU
  float32; held-out prediction took {c['predict_seconds']:.0f} s for {c['n_test']} images.
- **Machine** (measured by `plateseg.machine`): {c['machine']}; torch {c['torch']} with
  {c['threads']} threads. Date {c['date']}.
  Total run time {c['total_minutes']:.1f} min.
- **Command** (from the repo root): `{c['command']}`
- Outputs: `{c['out']}` (checkpoint `unet.pt`, `metrics.csv`, `per_image_<method>.csv`,
  `history.csv`, `tuning.csv`, `run.json`, `run.log`).
"""


# --------------------------------------------------------------------------- main
def main(argv=None):
    args = parse_args(argv)
    run = start_run(args, ("plateseg.engines.unet",))
    out, log = run.out, run.log

    import numpy as np
    import pandas as pd
    import torch

    from plateseg.io.annotated import data_hash
    from plateseg.segment.classical import segment_classical
    from plateseg.engines.unet import checkpoint_meta, predict_maps, save_checkpoint
    from plateseg.segment.watershed import instances_from_maps

    data = Path(args.data).resolve()
    log.info("loading %s", data)
    items, test, val, train = dsb_split(data, args.fold, args.k, args.val_groups_k, args.seed)
    rng = np.random.default_rng(args.seed)
    grid_items = [train[i] for i in sorted(rng.choice(len(train), min(args.classical_images, len(train)),
                                                      replace=False))]
    if args.quick:
        test = [test[i] for i in sorted(rng.choice(len(test), min(20, len(test)), replace=False))]
        val = val[:10]
        grid_items = grid_items[:15]
        args.epoch_steps = min(args.epoch_steps, 5)
        args.first_chunk_steps = min(args.first_chunk_steps, 10)
        args.min_chunk_steps = min(args.min_chunk_steps, 10)
    log.info("fold %d held out: %d test images; %d train, %d validation (watershed tuning); "
             "%d training-fold images for the classical grid", args.fold, len(test), len(train),
             len(val), len(grid_items))

    # classical settings on training-fold images
    cl_settings, cl_grid_map, cl_table = tune_classical(
        [it[1] for it in grid_items], [it[2] for it in grid_items], log)
    log.info("classical settings %s (grid mAP %.4f)", cl_settings, cl_grid_map)

    # U-Net
    from plateseg.config.params import unet_settings
    from plateseg.engines.unet import UNetParams, train_unet

    config = workflow_config(args.config)
    base = dict(unet_settings(config, "all"), encoder_name=args.encoder, crop_size=args.crop, batch_size=args.batch,
                device="cpu", amp=False, channels_last=False, num_workers=0, val_every=10**6)
    model, params, history, tinfo = train_in_chunks(
        train_unet, UNetParams, [it[1] for it in train], [it[2] for it in train], base, args, log)
    meta = checkpoint_meta(params, data_hash=data_hash(data), history=history,
                           fold=args.fold, k=args.k, train_ids=[it[0] for it in train],
                           val_ids=[it[0] for it in val], bench=tinfo)
    save_checkpoint(out / "unet.pt", model, meta)
    pd.DataFrame(history).to_csv(out / "history.csv", index=False)
    log.info("training: %s", tinfo)

    def predict(its):
        return [predict_maps(model, meta, it[1], tile_size=args.tile, halo=args.halo,
                             batch_size=4, device="cpu") for it in its]

    val_maps = predict(val)
    ws = {}
    tuning = [dict(r, mode="classical") for r in cl_table]
    for mode, grid in (("boundary", BOUNDARY_GRID), ("centre", CENTRE_GRID)):
        s, v, tab = tune_watershed(val_maps, [it[2] for it in val], mode, grid, log)
        ws[mode] = (s, v)
        tuning += tab
    pd.DataFrame(tuning).to_csv(out / "tuning.csv", index=False)
    del val_maps

    t0 = time.perf_counter()
    test_maps = predict(test)
    predict_seconds = time.perf_counter() - t0
    log.info("predicted %d held-out images in %.1f s", len(test), predict_seconds)

    gts = [it[2] for it in test]
    names = [it[0] for it in test]
    methods = {"classical": ([segment_classical(it[1][0], **cl_settings) for it in test], None)}
    for mode in ("boundary", "centre"):
        preds = [instances_from_maps(m, mode=mode, **ws[mode][0]) for m in test_maps]
        scores = [object_scores(p, m[0]) for p, m in zip(preds, test_maps)]
        methods[f"unet-{mode}"] = (preds, scores)
    rows = evaluate_methods(methods, gts, names, out, log)
    pd.DataFrame(rows).to_csv(out / "metrics.csv", index=False)

    ctx = {
        "quick": args.quick, "fold": args.fold, "k": args.k, "n_test": len(test),
        "n_test_objects": int(sum(int(len(np.unique(g)) - 1) for g in gts)),
        "n_folds_total": len(items), "classical_settings": cl_settings,
        "classical_grid_map": cl_grid_map, "classical_grid_n": len(cl_table),
        "n_grid": len(grid_items), "n_val": len(val), "n_train": len(train),
        "ws_boundary": ws["boundary"][0], "ws_boundary_val": ws["boundary"][1],
        "ws_centre": ws["centre"][0], "ws_centre_val": ws["centre"][1],
        "encoder": args.encoder, "crop": args.crop, "batch": args.batch, "lr": args.lr,
        "warmup": args.warmup_steps, "budget": args.budget_minutes, "train": tinfo,
        "chunk_text": chunk_text(tinfo["chunks"], args.epoch_steps),
        "config": relative_path(args.config, REPO),
        # those the chunks do not set (epochs, steps, warm-up, lr, seed: see above)
        "settings": {k: v for k, v in sorted(base.items()) if k not in (
            "device", "amp", "channels_last", "num_workers", "val_every", "epochs", "samples_per_epoch",
            "warmup_steps", "lr", "seed")},
        "tile": args.tile, "halo": args.halo, "predict_seconds": predict_seconds,
        "machine": run.machine_text(),
        "torch": torch.__version__, "threads": args.threads,
        "date": _dt.date.today().isoformat(), "total_minutes": run.minutes(),
        "command": command_text("bench/unet_dsb.py", argv), "out": relative_path(out, REPO),
    }
    write_section(Path(args.results), markdown_section(rows, ctx), SECTION)
    (out / "run.json").write_text(json.dumps({k: v for k, v in ctx.items()}, indent=1, default=str))
    log.info("wrote %s and %s (%.1f min)", args.results, out, ctx["total_minutes"])


if __name__ == "__main__":
    main()
