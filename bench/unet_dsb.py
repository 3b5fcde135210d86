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
import logging
import os
import platform
import shlex
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SECTION = "## U-Net on DSB2018 fluo"


def common_args(ap: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    """The options every DSB2018 benchmark shares: data, split, seed, threads, output folder, results file."""
    default_data = os.environ.get("PLATESEG_DSB2018") or str(REPO / ".." / "shared" / "data" / "dsb2018" / "fluo")
    ap.add_argument("--data", default=default_data,
                    help="annotated folder (default: $PLATESEG_DSB2018 or ../shared/data/dsb2018/fluo "
                         "relative to the repo root)")
    ap.add_argument("--fold", type=int, default=0, help="held-out fold")
    ap.add_argument("--k", type=int, default=5, help="number of grouped folds")
    ap.add_argument("--val-groups-k", type=int, default=8,
                    help="the validation split is one of this many grouped folds of the training folds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--out", default=str(REPO / "bench" / "out" / name))
    ap.add_argument("--results", default=str(REPO / "bench" / "RESULTS.md"))
    return ap


def parse_args(argv=None):
    ap = common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]), "unet_dsb")
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


def setup_logging(out: Path, libraries=("plateseg.engines.unet",)) -> logging.Logger:
    """The ``bench`` logger (and the ``libraries``' loggers) to stdout and ``out/run.log`` (``out`` is created)."""
    out.mkdir(parents=True, exist_ok=True)
    log = logging.getLogger("bench")
    log.setLevel(logging.INFO)
    fmt = logging.Formatter("%(asctime)s %(name)s %(message)s", "%H:%M:%S")
    for h in (logging.StreamHandler(sys.stdout), logging.FileHandler(out / "run.log", mode="w")):
        h.setFormatter(fmt)
        log.addHandler(h)
        for name in libraries:
            logging.getLogger(name).addHandler(h)
    for name in libraries:
        logging.getLogger(name).setLevel(logging.INFO)
    return log


# --------------------------------------------------------------------------- split

def dsb_split(data, fold: int = 0, k: int = 5, val_groups_k: int = 8, seed: int = 0, groups: bool = False):
    """The benchmarks' split of an annotated folder: ``(items, test, val, train)`` (and, with
    ``groups``, a fifth element: image id -> image group of :func:`plateseg.io.annotated.grouped_folds`).

    ``test`` is held-out grouped fold ``fold`` of ``grouped_folds(k, seed=0)``; ``val`` is
    grouped fold 0 of ``val_groups_k`` of the remaining images (``seed + 1``), used only to tune
    thresholds (and, for the ensemble, to train the picker: the engines never train on it);
    ``train`` is the rest. Each list holds ``(id, image, mask)`` items of ``load_annotated``.
    Shared by every DSB2018 benchmark so that they train and test on the same images.
    """
    import pandas as pd
    from plateseg.io.annotated import grouped_folds, load_annotated

    items, index = load_annotated(data, channels="gray")
    folds = grouped_folds(index, k=k, seed=0)
    fold_of = dict(zip(folds["id"], folds["fold"]))
    group_of = dict(zip(folds["id"], folds["group"]))
    test = [it for it in items if fold_of[it[0]] == fold]
    rest = [it for it in items if fold_of[it[0]] != fold]
    rest_idx = pd.DataFrame({"id": [it[0] for it in rest], "group": [group_of[it[0]] for it in rest]})
    sub = grouped_folds(rest_idx, k=val_groups_k, seed=seed + 1)
    val_ids = set(sub.loc[sub["fold"] == 0, "id"])
    val = [it for it in rest if it[0] in val_ids]
    train = [it for it in rest if it[0] not in val_ids]
    return (items, test, val, train, group_of) if groups else (items, test, val, train)


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


def object_scores(labels, fg_prob):
    """Mean foreground probability of each object (COCO AP ranking score)."""
    import numpy as np

    lab = labels.astype(np.int64).ravel()
    n = int(lab.max())
    if n == 0:
        return {}
    s = np.bincount(lab, weights=fg_prob.ravel().astype(np.float64), minlength=n + 1)
    c = np.bincount(lab, minlength=n + 1)
    return {i: float(s[i] / c[i]) for i in range(1, n + 1) if c[i]}


# --------------------------------------------------------------------------- training

def train_in_chunks(train_fn, params_cls, images, masks, base: dict, args, log, train_log=None,
                    fill: float = 0.92):
    """Train one model (``train_fn``: ``train_unet`` or ``train_maskrcnn``) in chunks of epochs that
    together fit in the wall-time budget ``args.budget_minutes``.

    The engines' training has no wall-time limit and the machine's speed varies with other jobs
    (measured 0.66 to 9.5 s per 128-px step of batch 8 within minutes), so a single plan from a
    warm-up is fragile. Instead training runs in chunks, each a ``train_fn`` call with its own
    warm-up + cosine schedule (warm restarts, as SGDR) starting from the previous chunk's weights
    (``initial_weights``): chunk 1 is short (``args.first_chunk_steps``) and measures the speed;
    each next chunk is sized from the last measured steady-state seconds per step to fill the
    remaining budget (x ``fill``). Each chunk ends at a low learning rate, so stopping after any
    chunk leaves a usable model. Guard: within a chunk, training stops at an epoch boundary
    (``on_epoch_end`` returns True) when the next epoch would overrun the budget; a chunk after the
    first cut before 75% of its epochs is discarded (its learning rate is still high) and the
    previous chunk's final weights are kept. Chunk ``i`` uses seed ``seed + 1000 * i`` so that its
    crops differ from earlier chunks'; peak learning rate halves from chunk 3.

    Returns ``(model, params, history, info)``: the params of the last chunk, every epoch's
    record (with its ``chunk``) and a summary (chunks, steps, seconds, whether the guard stopped).
    """
    budget = args.budget_minutes * 60.0
    t_start = time.perf_counter()
    weights = model = params = None
    history, chunks = [], []
    sec_per_step, stopped, chunk = None, False, 0
    while True:
        remaining = budget - (time.perf_counter() - t_start)
        steps = args.first_chunk_steps if chunk == 0 else int((remaining - 15.0) * fill / sec_per_step)
        epochs = steps // args.epoch_steps
        if epochs < 2 or (chunk > 0 and epochs * args.epoch_steps < args.min_chunk_steps):
            break
        lr = args.lr if chunk < 2 else args.lr * 0.5
        params = params_cls.coerce({
            **base, "epochs": epochs, "samples_per_epoch": args.epoch_steps * args.batch,
            "warmup_steps": args.warmup_steps if chunk == 0 else args.warmup_steps // 2,
            "lr": lr, "seed": args.seed + 1000 * chunk})
        log.info("chunk %d: %.0f s of budget left, %s s/step -> %d epochs x %d steps, peak lr %g",
                 chunk + 1, remaining, "?" if sec_per_step is None else f"{sec_per_step:.2f}",
                 epochs, args.epoch_steps, lr)
        recs = []
        t_chunk = time.perf_counter()

        def guard(rec, recs=recs, epochs=epochs):
            recs.append(rec)
            elapsed = time.perf_counter() - t_start
            if rec["epoch"] < epochs and elapsed + rec["seconds"] > budget:
                log.warning("budget guard: %.0f s elapsed, next epoch (~%.0f s) would overrun %.0f s; "
                            "stopping after epoch %d of %d", elapsed, rec["seconds"], budget,
                            rec["epoch"], epochs)
                return True
            return False

        new, _ = train_fn(images, masks, params, log=train_log or log, on_epoch_end=guard,
                          initial_weights=weights)
        stopped = len(recs) < epochs
        if stopped and weights is not None and len(recs) < 0.75 * epochs:
            log.warning("chunk %d cut short: keeping the weights of the end of chunk %d", chunk + 1, chunk)
        else:
            model = new
        history += [{"chunk": chunk + 1, **r} for r in recs]
        # steady state: leave out the chunk's first epoch (one-off costs) when possible
        steady = recs[1:] if len(recs) > 1 else recs
        sec_per_step = sum(r["seconds"] for r in steady) / sum(r["steps"] for r in steady)
        chunks.append({"chunk": chunk + 1, "epochs_planned": epochs, "epochs_done": len(recs),
                       "steps": sum(r["steps"] for r in recs), "lr": lr,
                       "seconds": time.perf_counter() - t_chunk, "sec_per_step": sec_per_step})
        weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        chunk += 1
        if stopped:
            break
    info = {"chunks": chunks, "epoch_steps": args.epoch_steps, "done_epochs": len(history),
            "done_steps": sum(r["steps"] for r in history), "train_seconds": time.perf_counter() - t_start,
            "stopped_by_guard": stopped, "final_loss": history[-1]["loss"] if history else float("nan")}
    return model, params, history, info


# --------------------------------------------------------------------------- report

COLUMNS = [
    ("DSB mAP", "mean_dsb_map"), ("COCO AP", "coco_AP"), ("AP50", "coco_AP50"),
    ("AP75", "coco_AP75"), ("F1@0.5", "pooled_f1_50"), ("P@0.7", "pooled_precision_70"),
    ("R@0.7", "pooled_recall_70"), ("Dice", "mean_dice"), ("over", "total_over"),
    ("under", "total_under"), ("n pred", "total_n_pred"),
]


def table_markdown(rows, columns=COLUMNS) -> str:
    """A markdown table, one row per ``method`` of ``rows`` (dicts); ``columns`` are (header, key)
    pairs; ``total_*`` keys print as integers, the rest with 3 decimals."""
    lines = ["| method | " + " | ".join(c for c, _ in columns) + " |", "|---|" + "---:|" * len(columns)]
    for r in rows:
        cells = [f"{int(r[k])}" if k.startswith("total_") else f"{float(r[k]):.3f}" for _, k in columns]
        lines.append(f"| {r['method']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
  warm-up steps then cosine to 5%, other `UNetParams` defaults (boundary width 2, heatmap
  sigma 2, BCE+Dice / weighted BCE / focal losses, flips, rot90, zoom 0.8-1.25, intensity
  jitter 0.1). Budget {c['budget']:g} min of wall time, trained in chunks (each a
  `train_unet` call with warm-up + cosine, continuing from the previous chunk's weights; chunk 1
  measures the speed, later chunks fill the remaining budget; peak lr halved from chunk 3):
  {c['chunk_text']}. **Done {tr['done_steps']} steps ({tr['done_steps'] * c['batch']} crops) in
  {tr['train_seconds'] / 60:.1f} min**{' - STOPPED EARLY by the budget guard' if tr['stopped_by_guard'] else ''}; final
  training loss {tr['final_loss']:.4f}. No validation during training.
- **Inference**: `predict_maps` tiled, tile {c['tile']} + halo {c['halo']} (trim halo/2), CPU
  float32; held-out prediction took {c['predict_seconds']:.0f} s for {c['n_test']} images.
- **Machine**: {c['machine']}; torch {c['torch']} with {c['threads']} threads; the 2 cores
  were shared with other developers' test runs, so wall times are inflated. Date {c['date']}.
  Total run time {c['total_minutes']:.1f} min.
- **Command** (from the repo root): `{c['command']}`
- Outputs: `{c['out']}` (checkpoint `unet.pt`, `metrics.csv`, `per_image_<method>.csv`,
  `history.csv`, `tuning.csv`, `run.json`, `run.log`).
"""


def write_section(path: Path, text: str, section: str = SECTION) -> None:
    """Replace (or append) ``section`` (a ``## `` heading line), keeping every other section."""
    old = path.read_text() if path.exists() else "# plateseg benchmarks\n"
    lines = old.splitlines(keepends=True)
    start = next((i for i, l in enumerate(lines) if l.strip() == section), None)
    if start is None:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = next((j for j in range(start + 1, len(lines)) if lines[j].startswith("## ")), len(lines))
        new = "".join(lines[:start]) + text.rstrip("\n") + "\n" + (
            "\n" + "".join(lines[end:]) if end < len(lines) else "")
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(new)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- main

def main(argv=None):
    args = parse_args(argv)
    t_run = time.perf_counter()
    out = Path(args.out)
    log = setup_logging(out)

    import numpy as np
    import pandas as pd
    import torch

    torch.set_num_threads(args.threads)
    from plateseg.io.annotated import data_hash
    from plateseg.segment.classical import segment_classical
    from plateseg.evaluation.metrics import evaluate_dataset
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
    from plateseg.engines.unet import UNetParams, train_unet

    base = dict(encoder_name=args.encoder, crop_size=args.crop, batch_size=args.batch,
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
    rows = []
    for name, (preds, scores) in methods.items():
        per_image, summary = evaluate_dataset(gts, preds, scores=scores, names=names, tie="gt")
        per_image.to_csv(out / f"per_image_{name}.csv", index=False)
        rows.append({"method": name, **summary})
        log.info("%s: mAP %.4f F1@0.5 %.4f COCO AP %.4f", name, summary["mean_dsb_map"],
                 summary["pooled_f1_50"], summary["coco_AP"])
    pd.DataFrame(rows).to_csv(out / "metrics.csv", index=False)

    try:
        rel_out = os.path.relpath(out, REPO)
    except ValueError:
        rel_out = str(out)
    cmd = ".venv/bin/python bench/unet_dsb.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
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
        "chunk_text": "; ".join(
            f"chunk {ch['chunk']}: {ch['steps']} steps ({ch['epochs_done']}/{ch['epochs_planned']} "
            f"epochs of {args.epoch_steps}), lr {ch['lr']:g}, {ch['seconds']:.0f} s, "
            f"{ch['sec_per_step']:.2f} s/step" for ch in tinfo["chunks"]),
        "tile": args.tile, "halo": args.halo, "predict_seconds": predict_seconds,
        "machine": f"{platform.machine()} Linux, {os.cpu_count()} cores, no GPU",
        "torch": torch.__version__, "threads": args.threads,
        "date": _dt.date.today().isoformat(), "total_minutes": (time.perf_counter() - t_run) / 60,
        "command": cmd.strip(), "out": rel_out,
    }
    write_section(Path(args.results), markdown_section(rows, ctx))
    (out / "run.json").write_text(json.dumps({k: v for k, v in ctx.items()}, indent=1, default=str))
    log.info("wrote %s and %s (%.1f min)", args.results, out, ctx["total_minutes"])


if __name__ == "__main__":
    main()
