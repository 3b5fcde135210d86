"""Benchmark: the LightGBM ensemble of U-Net and Mask R-CNN on DSB2018 fluo (seed 004 Table 5.1 layout).

Acceptance of issue 5. Uses the engines of ``bench/unet_dsb.py`` and ``bench/maskrcnn_dsb.py``
(``bench/out/unet_dsb/unet.pt``, ``bench/out/maskrcnn_dsb/maskrcnn.pt``), which trained on the same
images and never saw the validation split or the held-out fold (:func:`dsb_split`). Both engines
predict the validation split and the held-out fold; each candidate gets its features and its IoU with
the truth (:func:`plateseg.pipeline.candidates.image_candidates`, as the workflow's rule oof_candidates).
The picker (:func:`plateseg.ensemble.picker.train_picker`, the config's :class:`PickerParams`) must
never see the image it predicts, so the held-out fold is cross-fitted (``--crossfit K``, default 5):
its images are split into K folds by image group, and the candidates of each are predicted by a picker
trained on the validation candidates plus those of the other K-1 test folds -- every prediction comes
from a picker that saw neither the image nor its group, from engines that saw none of these images.
``--crossfit 0`` trains one picker on the validation split alone (that variant is always reported as
its own row, "ensemble (picker: val only)"). :func:`plateseg.ensemble.compare.compare_methods` scores the
classical baseline, U-Net, Mask R-CNN, the ensemble and the oracle (the best candidate by true IoU, the
upper bound of any picker over these candidates). Engine settings are the ones each engine's benchmark
chose on the validation split (watershed markers and thresholds; Mask R-CNN score threshold).

Run from the repository root (after the two engine benchmarks)::

    .venv/bin/python bench/ensemble_dsb.py

Writes the section ``## Ensemble on DSB2018 fluo`` of ``bench/RESULTS.md`` and, in ``--out``
(default ``bench/out/ensemble_dsb``), ``metrics.csv``, ``candidates_val.parquet``,
``candidates_test.parquet`` (features, true IoU), ``labels_val.npz``/``labels_test.npz`` (the candidates'
label images), ``importances.csv``, ``picker.json``, ``run.log``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import re
import time
from pathlib import Path

from plateseg.pipeline.bench import (command_text, common_args, dsb_split, relative_path, start_run, table_markdown,
                                     workflow_config, write_section)

REPO = Path(__file__).resolve().parents[1]

SECTION = "## Ensemble on DSB2018 fluo"


def parse_args(argv=None):
    ap = common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]), "ensemble_dsb", REPO)
    ap.add_argument("--unet", default=str(REPO / "bench" / "out" / "unet_dsb"))
    ap.add_argument("--maskrcnn", default=str(REPO / "bench" / "out" / "maskrcnn_dsb"))
    ap.add_argument("--markers", default="centre", choices=["boundary", "centre", "points"],
                    help="U-Net watershed markers of the U-Net candidates (settings from the U-Net benchmark)")
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--halo", type=int, default=64)
    ap.add_argument("--min-iou", type=float, default=None, help="default: config ensemble.min_iou")
    ap.add_argument("--nms-iou", type=float, default=None, help="default: config ensemble.nms_iou")
    ap.add_argument("--tune", action="store_true",
                    help="choose --min-iou and --nms-iou on the validation split (picker cross-validated there)")
    ap.add_argument("--crossfit", type=int, default=5,
                    help="cross-fit the picker over K grouped folds of the test images (0: validation only)")
    ap.add_argument("--quick", action="store_true", help="smoke test: 15 validation and 15 test images")
    return ap.parse_args(argv)


TABLE = [("DSB mAP", "mean_dsb_map"), ("Dice", "mean_dice"), ("Precision@0.7", "pooled_precision_70"),
         ("Recall@0.7", "pooled_recall_70"), ("oseg", "total_over"), ("useg", "total_under"),
         ("AP50", "coco_AP50"), ("AP75", "coco_AP75"), ("F1@0.5", "pooled_f1_50"), ("n pred", "total_n_pred")]


def tune_pick(table, labels, truths, picker_params, log, types=None, extra=None):
    """``(min_iou, nms_iou, grid)``: the pick thresholds of the best DSB mAP on annotated images whose
    candidates' IoUs are each predicted by a picker trained on the other images, so that no image is scored
    by a picker that saw it. ``table``/``labels`` are :func:`plateseg.pipeline.candidates.image_candidates`
    outputs, ``truths`` the true labels in image order.

    Without ``types`` the images are dealt into 5 groups and the score is the mean over images. With
    ``types`` (image id -> acquisition type), each type is held out in turn (the picker never saw the type
    of the images it predicts, as on a user's new microscope) and the score is the mean over types of the
    per-type mAP, so that one frequent type does not choose the thresholds for all.

    ``extra`` (optional) holds more training candidates of copies of these images (``downscaled_copies``) with a
    ``source`` column (the image each copy was made from): a copy is held out with its source, so no image is
    scored by a picker that saw it or any copy of it; copies are never scored."""
    import numpy as np
    import pandas as pd

    from plateseg.ensemble.pick import pick
    from plateseg.ensemble.picker import cross_validated_predictions
    from plateseg.evaluation.metrics import dsb_map

    table = table.copy()
    images = sorted(table["image"].unique())
    group = ({image_id: k % 5 for k, image_id in enumerate(images)} if types is None
             else {image_id: types[image_id] for image_id in images})
    table["group"] = table["image"].map(group)
    if extra is not None and len(extra):
        copies = extra.drop(columns=["source"]).assign(group=extra["source"].map(group).to_numpy())
        both = pd.concat([table, copies], ignore_index=True)
        table["predicted_iou"] = cross_validated_predictions(both, picker_params, group="group")[:len(table)]
    else:
        table["predicted_iou"] = cross_validated_predictions(table, picker_params, group="group")
    by_image = dict(tuple(table.groupby("image")))
    truth_of = dict(zip(labels, truths))
    grid = []
    for min_iou in (0.3, 0.4, 0.5, 0.6):
        for nms_iou in (0.2, 0.3, 0.5):
            per_image = {i: dsb_map(truth_of[i], pick(labels[i], by_image[i], min_iou=min_iou, nms_iou=nms_iou)[0],
                                    tie="gt") for i in labels}
            row = {"min_iou": min_iou, "nms_iou": nms_iou, "val_dsb_map": float(np.mean(list(per_image.values())))}
            if types is not None:
                by_type = {}
                for i, v in per_image.items():
                    by_type.setdefault(types[i], []).append(v)
                row.update({f"map_{t}": float(np.mean(v)) for t, v in sorted(by_type.items())})
                row["val_type_mean_map"] = float(np.mean([np.mean(v) for v in by_type.values()]))
            grid.append(row)
            log.info("validation: min_iou %.1f nms_iou %.1f -> mAP %.4f%s", min_iou, nms_iou, row["val_dsb_map"],
                     "" if types is None else f", mean over types {row['val_type_mean_map']:.4f}")
    best = max(grid, key=lambda r: r["val_dsb_map" if types is None else "val_type_mean_map"])
    return best["min_iou"], best["nms_iou"], grid


def main(argv=None):
    args = parse_args(argv)
    run = start_run(args, ("plateseg.pipeline.candidates",))
    out, log = run.out, run.log

    import numpy as np
    import pandas as pd
    import torch

    from plateseg.config.params import picker_settings
    from plateseg.engines import maskrcnn, unet
    from plateseg.ensemble.compare import compare_methods
    from plateseg.ensemble.features import save_candidate_labels
    from plateseg.ensemble.picker import PickerParams, cross_validated_predictions, train_picker
    from plateseg.io.annotated import grouped_folds
    from plateseg.pipeline.candidates import image_candidates
    from plateseg.segment.classical import segment_classical

    config = workflow_config(args.config)
    picker_params = PickerParams.coerce(picker_settings(config))
    if args.min_iou is None:
        args.min_iou = config["ensemble"]["min_iou"]
    if args.nms_iou is None:
        args.nms_iou = config["ensemble"]["nms_iou"]

    data = Path(args.data).resolve()
    _, test, val, train, group_of = dsb_split(data, args.fold, args.k, args.val_groups_k, args.seed, groups=True)
    engines = {"unet": unet.load_checkpoint(Path(args.unet) / "unet.pt", "cpu"),
               "maskrcnn": maskrcnn.load_checkpoint(Path(args.maskrcnn) / "maskrcnn.pt", "cpu")}
    train_ids = [it[0] for it in train]
    for name, (_, meta) in engines.items():
        if meta.get("train_ids") != train_ids:
            raise SystemExit(f"the {name} checkpoint was trained on another split; rerun its benchmark")
    unet_run = json.loads((Path(args.unet) / "run.json").read_text())
    mrcnn_run = json.loads((Path(args.maskrcnn) / "run.json").read_text())
    if args.markers == "points":
        watershed = {"mode": "points", **mrcnn_run["points"]}
    else:
        key = {"boundary": "ws_boundary", "centre": "ws_centre"}[args.markers]
        watershed = {"mode": args.markers, **unet_run[key]}
    detection = {"score_threshold": mrcnn_run["score_threshold"], "mask_threshold": 0.5, "min_area": 1}
    classical_settings = unet_run["classical_settings"]
    if args.quick:
        val, test = val[:15], test[:15]
    log.info("picker trains on %d validation images, tested on %d held-out images; watershed %s, detection %s",
             len(val), len(test), watershed, detection)

    def candidates(items, split):
        # the workflow's candidates (rule oof_candidates): both engines, features, true IoU
        t0 = time.perf_counter()
        table, labels = image_candidates(items, engines["unet"], engines["maskrcnn"], args.tile, args.halo, 2,
                                         watershed, detection, "cpu", name=split)
        table.to_parquet(out / f"candidates_{split}.parquet", index=False)
        save_candidate_labels(labels, out / f"labels_{split}.npz")
        return table, labels, time.perf_counter() - t0

    val_table, val_labels, val_seconds = candidates(val, "val")
    tuning = []
    if args.tune:
        args.min_iou, args.nms_iou, tuning = tune_pick(val_table, val_labels, [it[2] for it in val], picker_params, log)
        pd.DataFrame(tuning).to_csv(out / "tuning.csv", index=False)
    t0 = time.perf_counter()
    picker = train_picker(val_table, params=picker_params, log=log)
    picker_seconds = time.perf_counter() - t0
    test_table, test_labels, test_seconds = candidates(test, "test")
    val_only = picker.predict(test_table)
    if args.crossfit:
        ids = sorted(test_table["image"].unique())
        folds = grouped_folds(pd.DataFrame({"id": ids, "group": [group_of[i] for i in ids]}), k=args.crossfit,
                              seed=args.seed)
        test_table["crossfit"] = test_table["image"].map(dict(zip(folds["id"], folds["fold"])))
        t0 = time.perf_counter()
        test_table["predicted_iou"] = cross_validated_predictions(test_table, picker_params, group="crossfit",
                                                                always=val_table)
        log.info("cross-fitted picker: %d folds of the test images (%.0f s)", args.crossfit, time.perf_counter() - t0)
        test_table.to_parquet(out / "candidates_test.parquet", index=False)
        # the picker one would ship: every annotated candidate (its importances are reported)
        picker = train_picker(pd.concat([val_table, test_table.drop(columns=["crossfit", "predicted_iou"])],
                                        ignore_index=True), params=picker_params)
    else:
        test_table["predicted_iou"] = val_only
    picker.save(out / "picker.json")
    importances = picker.importances()
    importances.to_csv(out / "importances.csv", index=False)
    truths = {it[0]: it[2] for it in test}
    classical = {it[0]: segment_classical(it[1][0], **classical_settings) for it in test}
    summary, per_image = compare_methods(test_table, test_labels, truths, {"classical": classical},
                                         min_iou=args.min_iou, nms_iou=args.nms_iou)
    variants = []
    if args.crossfit:  # the same images and thresholds, every IoU predicted by the one validation-only picker
        alone, alone_images = compare_methods(test_table.assign(predicted_iou=val_only), test_labels, truths,
                                              min_iou=args.min_iou, nms_iou=args.nms_iou)
        variants = ["ensemble (picker: val only)"]
        summary = pd.concat([summary, alone[alone["method"] == "ensemble"].assign(method=variants[0])],
                            ignore_index=True)
        per_image[variants[0]] = alone_images["ensemble"]
    order = ["classical", "unet", "maskrcnn", *variants, "ensemble", "oracle"]
    summary = summary.set_index("method").loc[order].reset_index()
    summary.to_csv(out / "metrics.csv", index=False)
    for name, df in per_image.items():
        df.to_csv(out / f"per_image_{re.sub(r'[^a-z]+', '_', name).strip('_')}.csv", index=False)
    for row in summary.itertuples():
        log.info("%s: mAP %.4f Dice %.4f P@0.7 %.3f R@0.7 %.3f", row.method, row.mean_dsb_map, row.mean_dice,
                 row.pooled_precision_70, row.pooled_recall_70)

    s = summary.set_index("method")
    gap_engines = s.loc["ensemble", "mean_dsb_map"] - max(s.loc["unet", "mean_dsb_map"], s.loc["maskrcnn", "mean_dsb_map"])
    gap_oracle = s.loc["oracle", "mean_dsb_map"] - s.loc["ensemble", "mean_dsb_map"]
    better = max(("unet", "maskrcnn"), key=lambda m: s.loc[m, "mean_dsb_map"])
    diff = (per_image["ensemble"].set_index("image")["dsb_map"]
            - per_image[better].set_index("image")["dsb_map"]).to_numpy()
    boot = np.random.default_rng(args.seed).choice(diff, (2000, len(diff))).mean(axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    paired = (f"paired over the {len(diff)} images: mean {diff.mean():+.4f}, 95% bootstrap interval "
              f"[{lo:+.4f}, {hi:+.4f}] (2,000 resamples of the images); better on "
              f"{int((diff > 1e-9).sum())} images, worse on {int((diff < -1e-9).sum())}")
    n_obj = int(sum(len(np.unique(g)) - 1 for g in truths.values()))
    top = ", ".join(f"{r.feature} {r.gain_share:.2f}" for r in importances.head(6).itertuples())
    tune_text = (f" (best validation mAP {max(r['val_dsb_map'] for r in tuning):.3f} of a {len(tuning)}-point grid "
                 "over min_iou 0.3-0.6 and nms_iou 0.2/0.3/0.5, the picker cross-validated over 5 groups of validation "
                 "images; `tuning.csv`)") if tuning else ""
    if args.crossfit:
        picker_text = (f"Cross-fitted: the {len(test)} test images split into {args.crossfit} folds by image group; "
                       f"each fold's candidates predicted by a picker trained on the {len(val_table)} candidates of "
                       f"the {len(val)} validation images plus those of the other {args.crossfit - 1} test folds "
                       "(never the image's own group; neither engine trained on any of these images). The row "
                       "\"ensemble (picker: val only)\" is one picker trained on the validation candidates alone "
                       f"({picker_seconds:.1f} s). Importances below: a picker trained on all "
                       f"{len(val_table) + len(test_table)} candidates (`picker.json`).")
    else:
        picker_text = (f"Trained on the {len(val_table)} candidates of the {len(val)} validation images (never "
                       f"trained on by either engine), {picker_seconds:.1f} s.")
    cmd = command_text("bench/ensemble_dsb.py", argv)
    pp = picker_params
    picker_desc = (f"{pp.n_boosters} LightGBM boosters, {pp.num_boost_round} trees, learning rates "
                   f"{'/'.join(f'{v:g}' for v in pp.learning_rates)}, leaves {'/'.join(str(v) for v in pp.num_leaves)}, "
                   f"feature fractions {'/'.join(f'{v:g}' for v in pp.feature_fractions)}, averaged")
    smoke = "\n**SMOKE RUN** (`--quick`): numbers are not the benchmark.\n" if args.quick else ""
    text = f"""{SECTION}
{smoke}
Seed 004 Table 5.1 layout on the held-out grouped fold {args.fold} ({len(test)} images, {n_obj} nuclei;
the same images as the sections above). Precision, recall and over/under-segmentation at IoU 0.7
(pooled over the fold), DSB mAP (IoU > 0.5:0.95, mean over images), Dice (mean per image).

{table_markdown(summary.to_dict('records'), TABLE)}

- **Ensemble minus the better engine ({better}): {gap_engines:+.3f} mAP** ({paired}).
  **Oracle minus ensemble: {gap_oracle:+.3f} mAP** (the oracle keeps, by the same greedy NMS, the
  candidates with the highest *true* IoU: the ceiling of any picker over these candidates). Seed 004 (fluorescence, pretrained ResNet101 engines):
  U-Net 0.564, Mask R-CNN 0.569, ensemble 0.570.
- Share of kept objects: ensemble {s.loc['ensemble', 'share_unet']:.0%} U-Net /
  {s.loc['ensemble', 'share_maskrcnn']:.0%} Mask R-CNN (oracle {s.loc['oracle', 'share_unet']:.0%} /
  {s.loc['oracle', 'share_maskrcnn']:.0%}; seed 004: 41% / 59%). Predicted vs true IoU of the
  {len(test_table)} held-out candidates: Pearson {s.loc['ensemble', 'iou_pearson']:.3f}, Spearman
  {s.loc['ensemble', 'iou_spearman']:.3f}.
- **Picker**: `train_picker` with the `PickerParams` of the workflow config `{relative_path(args.config, REPO)}`
  (`plateseg.config.params.picker_settings`: {picker_desc}). {picker_text}
  Thresholds: predicted IoU >= {args.min_iou}, NMS IoU {args.nms_iou}{tune_text}.
  Top features (share of gain): {top}.
- **Candidates**: U-Net of the U-Net section, watershed markers {watershed}; Mask R-CNN of the Mask
  R-CNN section, {detection}; tiles {args.tile} + halo {args.halo}. Classical: {classical_settings}.
  Candidate generation: {val_seconds:.0f} s (validation) + {test_seconds:.0f} s (test) on CPU.
- Machine (measured by `plateseg.machine`): {run.machine_text()}; torch
  {torch.__version__}, {args.threads} threads. Date {_dt.date.today().isoformat()}; total {run.minutes():.1f} min.
- **Command**: `{cmd}`
"""
    write_section(Path(args.results), text, SECTION)
    log.info("wrote %s (%.1f min)", args.results, run.minutes())


if __name__ == "__main__":
    main()
