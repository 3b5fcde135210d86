"""Benchmark: the Mask R-CNN engine on DSB2018 fluo, next to the U-Net and the classical baseline.

Acceptance of issue 4. Same images as ``bench/unet_dsb.py`` (:func:`plateseg.pipeline.bench.dsb_split`: held-out
grouped fold ``--fold`` of 5 for the test, a grouped validation split of the training folds for
thresholds only, the rest for training). The Mask R-CNN (:mod:`plateseg.engines.maskrcnn`, from scratch,
small heads for CPU) trains within ``--budget-minutes`` of wall time in chunks (each a
``train_maskrcnn`` call with warm-up + cosine schedule continuing from the previous chunk's
weights via ``initial_weights``; a budget guard stops at an epoch boundary). The score threshold
is chosen on the validation split. On the held-out fold it is evaluated with
:func:`plateseg.evaluation.metrics.evaluate_dataset` (tie "gt", IoU > t), and so is the U-Net of
``bench/unet_dsb.py`` (its checkpoint ``bench/out/unet_dsb/unet.pt``) with Mask R-CNN centroids as
watershed markers (``mode="points"``, seed 003). The rows of ``bench/out/unet_dsb/metrics.csv``
(classical, unet-boundary, unet-centre on the same images) are repeated in the table. A section
``## Mask R-CNN on DSB2018 fluo`` is written (or replaced) in ``bench/RESULTS.md``.

Run from the repository root (after ``bench/unet_dsb.py``)::

    .venv/bin/python bench/maskrcnn_dsb.py --budget-minutes 65

Outputs in ``--out`` (default ``bench/out/maskrcnn_dsb``): ``maskrcnn.pt``, ``metrics.csv``,
``per_image_<method>.csv``, ``history.csv``, ``tuning.csv``, ``run.json``, ``run.log``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import time
from pathlib import Path

from plateseg.pipeline.bench import (chunk_text, command_text, common_args, dsb_split, evaluate_methods, object_scores,
                                     relative_path, start_run, table_markdown, train_in_chunks, workflow_config,
                                     write_section)

REPO = Path(__file__).resolve().parents[1]

SECTION = "## Mask R-CNN on DSB2018 fluo"
SCORE_THRESHOLDS = (0.5, 0.7, 0.8, 0.9)


def parse_args(argv=None):
    ap = common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]), "maskrcnn_dsb", REPO)
    ap.add_argument("--budget-minutes", type=float, default=65.0,
                    help="wall-time budget of Mask R-CNN training")
    ap.add_argument("--unet", default=str(REPO / "bench" / "out" / "unet_dsb"),
                    help="output folder of bench/unet_dsb.py (unet.pt, metrics.csv, run.json)")
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--fpn-channels", type=int, default=128)
    ap.add_argument("--box-head-dim", type=int, default=512)
    ap.add_argument("--mask-head-channels", type=int, default=128)
    ap.add_argument("--crop", type=int, default=192)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup-steps", type=int, default=100)
    ap.add_argument("--epoch-steps", type=int, default=50)
    ap.add_argument("--first-chunk-steps", type=int, default=150)
    ap.add_argument("--min-chunk-steps", type=int, default=150)
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--halo", type=int, default=64)
    ap.add_argument("--checkpoint", default=None,
                    help="evaluate this checkpoint (written by an earlier run on the same split) instead of training")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: tiny budget, 20 test and 10 validation images")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    run = start_run(args)
    out, log = run.out, run.log
    logging.getLogger("bench.maskrcnn").setLevel(logging.INFO)

    import numpy as np
    import pandas as pd
    import torch

    from plateseg.config.params import maskrcnn_settings
    from plateseg.io.annotated import data_hash
    from plateseg.engines.maskrcnn import (MaskRCNNParams, checkpoint_meta, load_checkpoint, predict_instances,
                                   save_checkpoint, train_maskrcnn)
    from plateseg.labels import centroids
    from plateseg.evaluation.metrics import dsb_map_dataset
    from plateseg.engines.unet import load_checkpoint as load_unet
    from plateseg.engines.unet import predict_maps
    from plateseg.segment.watershed import instances_from_maps

    data = Path(args.data).resolve()
    items, test, val, train = dsb_split(data, args.fold, args.k, args.val_groups_k, args.seed)
    unet_dir = Path(args.unet)
    unet_model, unet_meta = load_unet(unet_dir / "unet.pt", "cpu")
    if unet_meta.get("train_ids") != [it[0] for it in train]:
        raise SystemExit(f"{unet_dir / 'unet.pt'} was trained on another split; rerun bench/unet_dsb.py")
    if args.quick:
        rng = np.random.default_rng(args.seed)
        test = [test[i] for i in sorted(rng.choice(len(test), 20, replace=False))]
        val = val[:10]
        args.epoch_steps, args.first_chunk_steps, args.min_chunk_steps = 5, 10, 10
    log.info("fold %d held out: %d test images; %d train, %d validation", args.fold, len(test),
             len(train), len(val))

    base = dict(maskrcnn_settings(workflow_config(args.config), "all"), backbone=args.backbone, fpn_channels=args.fpn_channels, box_head_dim=args.box_head_dim,
                mask_head_channels=args.mask_head_channels, crop_size=args.crop, batch_size=args.batch,
                device="cpu", amp=False, val_every=10**6, box_batch_size_per_image=256)
    if args.checkpoint:  # evaluate a model this script trained earlier (same split), no training
        model, meta = load_checkpoint(args.checkpoint, "cpu")
        if meta.get("train_ids") != [it[0] for it in train]:
            raise SystemExit(f"{args.checkpoint} was trained on another split")
        tinfo = meta["bench"]
    else:
        model, params, history, tinfo = train_in_chunks(
            train_maskrcnn, MaskRCNNParams, [it[1] for it in train], [it[2] for it in train], base, args, log,
            train_log=logging.getLogger("bench.maskrcnn"), fill=0.9)
        meta = checkpoint_meta(params, data_hash=data_hash(data), history=history, fold=args.fold,
                               k=args.k, train_ids=[it[0] for it in train], val_ids=[it[0] for it in val],
                               bench=tinfo)
        save_checkpoint(out / "maskrcnn.pt", model, meta)
        pd.DataFrame(history).to_csv(out / "history.csv", index=False)
    log.info("training: %s", tinfo)

    def detect(its, thr):
        res = [predict_instances(model, meta, it[1], tile_size=args.tile, halo=args.halo,
                                 batch_size=2, device="cpu", score_threshold=thr) for it in its]
        return [r[0] for r in res], [dict(zip(r[1]["label"].tolist(), r[1]["score"].tolist())) for r in res]

    # score threshold on the validation split
    tuning = []
    best = None
    for thr in SCORE_THRESHOLDS:
        labs, _ = detect(val, thr)
        score = dsb_map_dataset(zip([it[2] for it in val], labs), tie="gt")
        tuning.append({"method": "maskrcnn", "score_threshold": thr, "dsb_map": score})
        log.info("score threshold %.1f: validation mAP %.4f", thr, score)
        if best is None or score > best[1]:
            best = (thr, score, labs)
    thr = best[0]
    val_points = [centroids(lab) for lab in best[2]]
    val_maps = [predict_maps(unet_model, unet_meta, it[1], tile_size=args.tile, halo=32, batch_size=4,
                             device="cpu") for it in val]
    best_pts = None
    for fg in (0.4, 0.5, 0.6):
        for min_area in (10, 20):
            preds = [instances_from_maps(m, mode="points", points=p, fg_threshold=fg, min_area=min_area)
                     for m, p in zip(val_maps, val_points)]
            score = dsb_map_dataset(zip([it[2] for it in val], preds), tie="gt")
            tuning.append({"method": "unet-points", "fg_threshold": fg, "min_area": min_area, "dsb_map": score})
            if best_pts is None or score > best_pts[1]:
                best_pts = ({"fg_threshold": fg, "min_area": min_area}, score)
    log.info("points watershed: %s (validation mAP %.4f)", *best_pts)
    pd.DataFrame(tuning).to_csv(out / "tuning.csv", index=False)

    t0 = time.perf_counter()
    test_labels, test_scores = detect(test, thr)
    predict_seconds = time.perf_counter() - t0
    test_maps = [predict_maps(unet_model, unet_meta, it[1], tile_size=args.tile, halo=32, batch_size=4,
                              device="cpu") for it in test]
    points = [instances_from_maps(m, mode="points", points=centroids(lab), **best_pts[0])
              for m, lab in zip(test_maps, test_labels)]
    gts, names = [it[2] for it in test], [it[0] for it in test]
    rows = []
    prev = unet_dir / "metrics.csv"
    if prev.is_file() and not args.quick:
        rows += pd.read_csv(prev).to_dict("records")
    rows += evaluate_methods({"maskrcnn": (test_labels, test_scores),
                              "unet-points (Mask R-CNN markers)": (
                                  points, [object_scores(p, m[0]) for p, m in zip(points, test_maps)])},
                             gts, names, out, log)
    pd.DataFrame(rows).to_csv(out / "metrics.csv", index=False)

    cmd = command_text("bench/maskrcnn_dsb.py", argv)
    chunks = chunk_text(tinfo["chunks"])
    smoke = "\n**SMOKE RUN** (`--quick`): numbers are not the benchmark.\n" if args.quick else ""
    n_obj = int(sum(len(np.unique(g)) - 1 for g in gts))
    text = f"""{SECTION}
{smoke}
Same held-out grouped fold as the U-Net section ({len(test)} images, {n_obj} nuclei), same
metrics (`evaluate_dataset`, tie "gt": a match needs IoU > t). Seed-004 layout: DSB mAP, Dice,
precision/recall at IoU 0.7, over/under-segmentations (IoP/IoG 0.5). The first three rows are
`bench/out/unet_dsb/metrics.csv` (see the U-Net section); Mask R-CNN objects are ranked by their
detection score for COCO AP.

{table_markdown(rows)}

- **maskrcnn**: `plateseg.engines.maskrcnn`, {args.backbone}-FPN from scratch (batch norm, all layers
  trained), FPN {args.fpn_channels} channels, box head {args.box_head_dim}, mask head
  {args.mask_head_channels}, anchors 8-128 px, native resolution; {len(train)} training images,
  crops {args.crop} px, batch {args.batch}, AdamW lr {args.lr:g} (halved from chunk 3), warm-up
  then cosine. Budget {args.budget_minutes:g} min: {chunks}. **Done {tinfo['done_steps']} steps
  in {tinfo['train_seconds'] / 60:.1f} min**{' (last chunk cut by the budget guard)' if tinfo['stopped_by_guard'] else ''};
  final loss {tinfo['final_loss']:.3f}. Tiled inference (tile {args.tile}, halo {args.halo},
  centroid ownership, nearest-centroid overlap resolution), score threshold {thr} (best of
  {"/".join(str(t) for t in SCORE_THRESHOLDS)} on the {len(val)} validation images, mAP {best[1]:.3f}); {predict_seconds:.0f} s
  for the held-out fold on CPU.
- **unet-points**: the U-Net of the section above, watershed of its foreground from the Mask
  R-CNN centroids (seed 003), {best_pts[0]} (validation mAP {best_pts[1]:.3f}).
- Machine (measured by `plateseg.machine`): {run.machine_text()}; torch
  {torch.__version__}, {args.threads} threads. Other settings: the workflow config `{relative_path(args.config, REPO)}` through
  `plateseg.config.params.maskrcnn_settings`. Date {_dt.date.today().isoformat()};
  total {run.minutes():.1f} min.
- **Command**: `{cmd}`
"""
    write_section(Path(args.results), text, SECTION)
    (out / "run.json").write_text(json.dumps({"train": tinfo, "score_threshold": thr,
                                              "points": best_pts[0], "predict_seconds": predict_seconds},
                                             indent=1, default=str))
    log.info("wrote %s (%.1f min)", args.results, run.minutes())


if __name__ == "__main__":
    main()
