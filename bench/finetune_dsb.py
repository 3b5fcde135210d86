"""Benchmark: fine-tuning the shipped set on a few annotated images of a kind it was not trained on.

Acceptance of issue 12 (fine-tuning). The shipped set ``models/dsb2018-fluo`` kept one grouped fold of
DSB2018 fluo out of every file (its checkpoints list the images: ``kept_out_ids``). ``--n-tune`` (20) of those
images, drawn at random with ``--seed``, fine-tune both engines from the shipped weights as ``models.source:
finetune`` does in the workflow (:func:`plateseg.engines.base.finetune_params`: the set's model, normalisation,
crops and augmentation; the schedule of :data:`plateseg.config.params.FINETUNE_DEFAULTS`; the images zoomed as
inference would zoom their fields, :func:`plateseg.engines.scale.training_zooms`); the fold's other images are scored with
the shipped engines and with the fine-tuned ones (U-Net, Mask R-CNN, and the ensemble with the set's picker and
thresholds: the workflow would also retrain the picker on out-of-fold candidates, which 20 images barely feed).

Run from the repository root::

    .venv/bin/python bench/finetune_dsb.py

``--pool picker`` draws the tuning and the scored images from the set's picker split instead (``val_ids``: images
neither engine trained on), which is where fine-tuning settings are chosen, never on the kept-out fold; it writes
its own section (``## Fine-tuning the shipped set, picker split``) and folder (``bench/out/finetune_dsb_picker``).

``--pool unseen`` draws them from an annotated folder of a microscope no file of the set saw (``--unseen-data``,
default ``../shared/data/dsb2018/bf_histo``, images of ``--modality`` ``histology_color``: stained tissue in
brightfield, read as gray like the set's input); the folder's data hash must differ from the set's. Own section
(``## Fine-tuning the shipped set, a microscope it never saw``) and folder (``bench/out/finetune_dsb_unseen``).

Writes the section ``## Fine-tuning the shipped set`` of ``bench/RESULTS.md`` and ``metrics.csv``,
``per_image_*.csv``, ``run.log`` in ``--out`` (default ``bench/out/finetune_dsb``).
"""
from __future__ import annotations

import argparse
import datetime as _dt
from pathlib import Path

from plateseg.pipeline.bench import (command_text, common_args, relative_path, start_run, table_markdown,
                                     unseen_items, write_section)

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Fine-tuning the shipped set"
# --pool: which images of the set's split the tuning and scored images are drawn from (checkpoint meta key, words)
POOLS = {"kept-out": ("kept_out_ids", "its kept-out fold ({n} DSB2018 fluo images no file of the set saw)", ""),
         "picker": ("val_ids", "its picker split ({n} DSB2018 fluo images neither engine trained on; the set's "
                    "thresholds and picker were chosen and trained on them, so the ensemble rows flatter it)",
                    ", picker split"),
         "unseen": (None, "{n} images of a microscope no file of the set saw (`{folder}`, modality `{modality}`: "
                    "stained tissue in brightfield, read as gray)", ", a microscope it never saw")}
TABLE = [("DSB mAP", "mean_dsb_map"), ("AP50", "coco_AP50"), ("F1@0.5", "pooled_f1_50"),
         ("P@0.7", "pooled_precision_70"), ("R@0.7", "pooled_recall_70"), ("Dice", "mean_dice"),
         ("n pred", "total_n_pred")]


def parse_args(argv=None):
    ap = common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]), "finetune_dsb", REPO)
    ap.add_argument("--set-dir", default=str(REPO / "models" / "dsb2018-fluo"))
    ap.add_argument("--pool", choices=sorted(POOLS), default="kept-out",
                    help="kept-out: the set's kept-out fold (the reported check); picker: the set's picker split, "
                         "to choose fine-tuning settings without looking at the kept-out fold; unseen: "
                         "--unseen-data, a microscope the set never saw (each its own section and output folder)")
    ap.add_argument("--unseen-data", default=str(REPO / ".." / "shared" / "data" / "dsb2018" / "bf_histo"),
                    help="--pool unseen: annotated folder of a microscope the set never saw")
    ap.add_argument("--modality", default="histology_color",
                    help="--pool unseen: the index.csv modality whose images are used (one microscope)")
    ap.add_argument("--n-tune", type=int, default=20, help="images of the pool the engines are fine-tuned on")
    ap.add_argument("--unet-lr", type=float, default=None, help="default: FINETUNE_DEFAULTS (the workflow's)")
    ap.add_argument("--maskrcnn-lr", type=float, default=None, help="default: FINETUNE_DEFAULTS (the workflow's)")
    ap.add_argument("--freeze-bn", action=argparse.BooleanOptionalAction, default=False,
                    help="keep the BatchNorm statistics of the shipped weights")
    args = ap.parse_args(argv)
    if args.pool != "kept-out" and Path(args.out) == REPO / "bench" / "out" / "finetune_dsb":
        args.out = str(REPO / "bench" / "out" / f"finetune_dsb_{args.pool}")
    return args


def bn_text(frozen: dict) -> str:
    """How fine-tuning treated the BatchNorm statistics, per engine (``frozen``: engine -> freeze_bn).

    Examples
    --------
    >>> bn_text({"unet": True, "maskrcnn": True}), bn_text({"unet": True, "maskrcnn": False})
    ('kept (frozen)', 'kept (frozen) for unet, updated for maskrcnn')
    """
    word = {True: "kept (frozen)", False: "updated"}
    if len(set(frozen.values())) == 1:
        return word[next(iter(frozen.values()))]
    return ", ".join(f"{word[v]} for {k}" for k, v in frozen.items())


def main(argv=None):
    args = parse_args(argv)
    run = start_run(args, ("plateseg.pipeline.candidates",))
    out, log = run.out, run.log

    import time

    import numpy as np
    import pandas as pd
    import torch
    import yaml

    from plateseg.config.params import watershed_settings

    from plateseg.config.params import FINETUNE_DEFAULTS
    from plateseg.engines import maskrcnn, unet
    from plateseg.engines.base import finetune_params
    from plateseg.engines.scale import training_zooms, zoom_annotated
    from plateseg.ensemble.compare import compare_methods
    from plateseg.ensemble.picker import Picker
    from plateseg.io.annotated import load_annotated
    from plateseg.pipeline.candidates import image_candidates

    set_dir = Path(args.set_dir)
    shipped = {"unet": unet.load_checkpoint(set_dir / "unet.pt", "cpu"),
               "maskrcnn": maskrcnn.load_checkpoint(set_dir / "maskrcnn.pt", "cpu")}
    settings = yaml.safe_load((set_dir / "settings.yaml").read_text())
    picker = Picker.load(set_dir / "picker.json")
    key, pool_text, section_tail = POOLS[args.pool]
    if key is None:
        items = unseen_items(Path(args.unseen_data).resolve(), args.modality, shipped["unet"][1])
    else:
        pool = set(shipped["unet"][1][key])
        items = [it for it in load_annotated(Path(args.data).resolve(), channels="gray")[0] if it[0] in pool]
    rng = np.random.default_rng(args.seed)
    tune_idx = set(rng.choice(len(items), args.n_tune, replace=False).tolist())
    tune = [it for k, it in enumerate(items) if k in tune_idx]
    test = [it for k, it in enumerate(items) if k not in tune_idx]
    log.info("%s: %d images; fine-tuning on %d, scoring %d", args.pool, len(items), len(tune), len(test))

    tuned, seconds, frozen, done, schedule, zoom_text = {}, {}, {}, {}, {}, {}
    plans = {"unet": (unet.UNetParams, unet.train_unet, args.unet_lr),
             "maskrcnn": (maskrcnn.MaskRCNNParams, maskrcnn.train_maskrcnn, args.maskrcnn_lr)}
    for name, (cls, train, lr) in plans.items():
        model, meta = shipped[name]
        defaults = dict(FINETUNE_DEFAULTS[name], **({} if lr is None else {"lr": lr}))
        params = finetune_params({**defaults, "seed": args.seed, "device": "cpu", "amp": False, "num_workers": 0,
                                  "val_every": 10**6, "freeze_bn": args.freeze_bn}, meta, cls)
        # the zoom inference (segmentation.rescale auto) would give each tuning image's field for this model
        zooms = training_zooms([it[2] for it in tune], meta)
        images, masks = zoom_annotated([it[1] for it in tune], [it[2] for it in tune], zooms)
        zoom_text[name] = ", ".join(f"x{z:g} ({zooms.count(z)} images)" for z in sorted(set(zooms)))
        log.info("%s: training zooms of the %d tuning images (as inference zooms their fields): %s; crops %d px, "
                 "scale augmentation %s (the checkpoint's)", name, len(tune), zoom_text[name], params["crop_size"],
                 params["scale_range"])
        t0 = time.perf_counter()
        new, history = train(images, masks, params,
                             initial_weights={k: v.float() for k, v in model.state_dict().items()})
        seconds[name] = time.perf_counter() - t0
        tuned[name] = (new.eval(), meta)
        frozen[name] = params["freeze_bn"]
        done[name] = sum(rec["steps"] for rec in history)
        schedule[name] = params
        log.info("%s fine-tuned: %d epochs in %.0f s, final loss %.4f", name, len(history), seconds[name],
                 history[-1]["loss"])

    ws = watershed_settings(settings)
    truths = {it[0]: it[2] for it in test}
    rows = []
    for label, engines in (("shipped", shipped), ("fine-tuned", tuned)):
        table, labels = image_candidates(test, engines["unet"], engines["maskrcnn"], 256, 64, 2, ws,
                                         settings["maskrcnn"], "cpu", name=label)
        table["predicted_iou"] = picker.predict(table)
        summary, per_image = compare_methods(table, labels, truths, **settings["ensemble"])
        for row in summary.to_dict("records"):
            if row["method"] in ("unet", "maskrcnn", "ensemble"):
                rows.append({**row, "method": f"{row['method']} ({label})"})
        for m, df in per_image.items():
            df.to_csv(out / f"per_image_{m}_{label.replace('-', '')}.csv", index=False)
    metrics = pd.DataFrame(rows)
    metrics.to_csv(out / "metrics.csv", index=False)
    mt = metrics.set_index("method")
    gains = ", ".join(f"{m} {mt.loc[f'{m} (fine-tuned)', 'mean_dsb_map'] - mt.loc[f'{m} (shipped)', 'mean_dsb_map']:+.3f}"
                      for m in ("unet", "maskrcnn", "ensemble"))
    section = SECTION + section_tail
    default = all(lr is None for _, _, lr in plans.values())
    schedule_text = ("the workflow's `models.source: finetune` default (`plateseg.config.params.FINETUNE_DEFAULTS`)"
                     if default else "the workflow's default with the learning rates of the command")
    if args.pool == "kept-out":
        schedule_text += (",\n  chosen on the set's picker split (`--pool picker`: its images trained neither engine), "
                          "not on this fold")
    text = f"""{section}

The shipped set `{set_dir.relative_to(REPO) if set_dir.is_relative_to(REPO) else set_dir}` on
{pool_text.format(n=len(items), folder=relative_path(Path(args.unseen_data).resolve(), REPO),
                 modality=args.modality)}: {len(tune)} of them (drawn at random, seed
{args.seed}) fine-tune both engines from the shipped weights; the other **{len(test)} images** are scored with the
shipped and with the fine-tuned engines (the ensemble with the set's picker and thresholds in both rows).

{table_markdown(rows, TABLE)}

- **Fine-tuned minus shipped (DSB mAP): {gains}.**
- U-Net: {done['unet']} steps (batch {schedule['unet']['batch_size']}, lr {schedule['unet']['lr']:g}),
  {seconds['unet']:.0f} s; Mask R-CNN: {done['maskrcnn']} steps (batch {schedule['maskrcnn']['batch_size']}, lr
  {schedule['maskrcnn']['lr']:g}), {seconds['maskrcnn']:.0f} s; the checkpoints' crops and augmentation
  (`finetune_params`), warm-up then cosine; BatchNorm statistics of the shipped weights {bn_text(frozen)} during
  fine-tuning. The tuning images are trained on at the zoom inference gives their fields
  (`plateseg.engines.scale.training_zooms`): U-Net {zoom_text['unet']}, Mask R-CNN {zoom_text['maskrcnn']}.
- The schedule is {schedule_text}.
- Machine (measured by `plateseg.machine`): {run.machine_text()}; torch {torch.__version__}, {args.threads}
  threads. Date {_dt.date.today().isoformat()}; total {run.minutes():.1f} min.
- **Command**: `{command_text("bench/finetune_dsb.py", argv)}`
"""
    write_section(Path(args.results), text, section)
    log.info("wrote %s (%.1f min)", args.results, run.minutes())


if __name__ == "__main__":
    main()
