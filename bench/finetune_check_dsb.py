"""Benchmark: does rule choose_model (``models.source: finetune``) catch fine-tuning that hurts?

Issue 12 (fine-tuning). ``bench/finetune_dsb.py`` fine-tunes the shipped set on 20 images of its kept-out fold
(drawn with ``--seed``) and scores the other images: there fine-tuning lowered the DSB mAP. This benchmark runs
what the workflow does with the same 20 images as ``training.annotations``: grouped folds of them
(:func:`plateseg.pipeline.folds.make_folds`, ``--check-k``), fold models fine-tuned without each fold and the
model on all 20 (:func:`plateseg.pipeline.validation.train_fold`, :func:`plateseg.pipeline.train.train_model`,
the schedule of :data:`plateseg.config.params.FINETUNE_DEFAULTS`), then the check
(:func:`plateseg.pipeline.validation.choose_finetuned`), which sees only the 20 images. The other images of the
fold then score the shipped, the fine-tuned and the chosen model, so the table says what the check saved or cost.

Run from the repository root (resumable: checkpoints in ``--out``/models are reused)::

    .venv/bin/python bench/finetune_check_dsb.py --engines unet

Writes the section ``## Fine-tuning check (rule choose_model)`` of ``bench/RESULTS.md``, and ``check_*.csv``,
``scores.csv``, ``run.log`` in ``--out`` (default ``bench/out/finetune_check_dsb``).
"""
from __future__ import annotations

import argparse
import datetime as _dt
from pathlib import Path

from plateseg.pipeline.bench import (annotated_subset, command_text, common_args, start_run, table_markdown,
                                     write_section)

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Fine-tuning check (rule choose_model)"
TABLE = [("DSB mAP", "dsb_map"), ("F1@0.5", "f1_50")]


def parse_args(argv=None):
    ap = common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]), "finetune_check_dsb", REPO)
    ap.add_argument("--set-dir", default=str(REPO / "models" / "dsb2018-fluo"))
    ap.add_argument("--n-tune", type=int, default=20, help="kept-out images the engines are fine-tuned on")
    ap.add_argument("--check-k", type=int, default=3, help="grouped folds of the tuning images")
    ap.add_argument("--engines", nargs="+", choices=["unet", "maskrcnn"], default=["unet", "maskrcnn"])
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    run = start_run(args, ("plateseg.pipeline.train", "plateseg.pipeline.validation", "plateseg.engines"))
    out, log = run.out, run.log

    import importlib
    import time

    import numpy as np
    import pandas as pd
    import torch
    import yaml

    from plateseg.config.params import watershed_settings

    from plateseg.config.params import FINETUNE_DEFAULTS
    from plateseg.engines.base import params_from_meta
    from plateseg.io.annotated import load_annotated
    from plateseg.pipeline.folds import make_folds
    from plateseg.pipeline.train import PARAMS, finetune_items, train_model
    from plateseg.pipeline.validation import VALIDATORS, choose_finetuned, train_fold

    data, set_dir = Path(args.data).resolve(), Path(args.set_dir)
    settings = yaml.safe_load((set_dir / "settings.yaml").read_text())
    watershed = watershed_settings(settings)
    # the draw of bench/finetune_dsb.py: the same tuning and scored images for the same --seed
    engines = {e: importlib.import_module(f"plateseg.engines.{e}") for e in ("unet", "maskrcnn")}
    kept_out = set(engines["unet"].load_checkpoint(set_dir / "unet.pt", "cpu")[1]["kept_out_ids"])
    items = [it for it in load_annotated(data, channels="gray")[0] if it[0] in kept_out]
    tune_idx = set(np.random.default_rng(args.seed).choice(len(items), args.n_tune, replace=False).tolist())
    tune = [it for k, it in enumerate(items) if k in tune_idx]
    test = [it for k, it in enumerate(items) if k not in tune_idx]
    log.info("kept-out fold: %d images; the check's annotations: %d; scored: %d", len(items), len(tune), len(test))

    # the tuning images as a user's annotated folder (the files of the data folder, not re-encoded)
    ann = annotated_subset(data, [it[0] for it in tune], out / "annotations")
    folds = out / "folds.csv"
    make_folds(ann, folds, k=args.check_k, seed=args.seed)

    checks, scores, seconds = {}, [], {}
    for engine in args.engines:
        module = engines[engine]
        initial = set_dir / f"{engine}.pt"
        val = {"unet": {"val_watershed": watershed},
               "maskrcnn": {"val_score_threshold": settings["maskrcnn"]["score_threshold"]}}[engine]
        params = {**FINETUNE_DEFAULTS[engine], "seed": args.seed, "amp": False, "num_workers": 0,
                  "val_every": 10**6, **val}
        models = out / "models" / engine
        models.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        for fold in range(args.check_k):
            if not (models / f"{fold}.pt").exists():
                train_fold(engine, ann, fold, models / f"{fold}.pt", params, folds, threads=args.threads,
                           initial=initial)
        if not (models / "all.pt").exists():
            train_model(engine, ann, models / "all.pt", params, threads=args.threads, initial=initial)
        seconds[engine] = time.perf_counter() - t0
        checks[engine] = choose_finetuned(engine, [models / f"{k}.pt" for k in range(args.check_k)],
                                          models / "all.pt", initial, ann, models / "final.pt",
                                          out / f"check_{engine}.csv", threads=args.threads)
        for label, path in (("shipped", initial), ("fine-tuned", models / "all.pt"),
                            ("chosen by the check", models / "final.pt")):
            model, meta = module.load_checkpoint(path, "cpu")
            p = params_from_meta(getattr(module, PARAMS[engine]), {"params": {**meta.get("params", {}), **val}})
            zoomed, _ = finetune_items(test, meta)
            s = VALIDATORS[engine](model, meta, ([z[1] for z in zoomed], [z[2] for z in zoomed]), p,
                                   torch.device("cpu"))
            scores.append({"method": f"{engine} ({label})", "dsb_map": s["val_ap"], "f1_50": s["val_f1_50"]})
            log.info("%s on the %d scored images: DSB mAP %.3f, F1@0.5 %.3f", scores[-1]["method"], len(test),
                     s["val_ap"], s["val_f1_50"])
    pd.DataFrame(scores).to_csv(out / "scores.csv", index=False)

    def check_line(engine):
        c = checks[engine].iloc[-1]
        return (f"- {engine}: fold models {c['dsb_map_finetuned']:.3f} vs shipped {c['dsb_map_initial']:.3f} DSB mAP "
                f"on the {int(c['n_images'])} tuning images, each scored by the fold model that did not train on "
                f"it (per fold: " + ", ".join(f"{r.dsb_map_finetuned:.3f} vs {r.dsb_map_initial:.3f}"
                                               for r in checks[engine].iloc[:-1].itertuples())
                + f") -> **{c['choice']}**; training {seconds[engine]:.0f} s ({args.check_k} fold models and "
                f"the model on all {len(tune)})")

    text = f"""{SECTION}

What `models.source: finetune` does with 20 annotated images, on the shipped set's kept-out fold: the
{len(tune)} images `bench/finetune_dsb.py` fine-tunes on (same draw, seed {args.seed}) are the annotations;
{args.check_k} grouped folds of them give fold models, and rule `choose_model` keeps a fine-tuned engine only if
its fold models beat the shipped model on the images they did not train on. The check sees only those
{len(tune)} images; the other **{len(test)} images** of the fold score the result (the engine's fold
validation: U-Net with the set's watershed, Mask R-CNN at the set's score threshold).

{table_markdown(scores, TABLE)}

{chr(10).join(check_line(e) for e in args.engines)}
- Schedule: `plateseg.config.params.FINETUNE_DEFAULTS` (the workflow's), seed {args.seed}.
- Machine (measured by `plateseg.machine`): {run.machine_text()}; torch {torch.__version__}, {args.threads}
  threads. Date {_dt.date.today().isoformat()}; total {run.minutes():.1f} min.
- **Command**: `{command_text("bench/finetune_check_dsb.py", argv)}`
"""
    write_section(Path(args.results), text, SECTION)
    log.info("wrote %s (%.1f min)", args.results, run.minutes())


if __name__ == "__main__":
    main()
