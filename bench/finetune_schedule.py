"""Benchmark: the schedule ``models.source: finetune`` uses by default (``plateseg.config.params.FINETUNE_DEFAULTS``).

Issue 12 (fine-tuning on a user's annotations). Each schedule (``--schedules ENGINE:EPOCHS:LR``, the other
settings the defaults') is judged the way rule ``choose_model`` judges fine-tuning: grouped folds of the annotated
images (:func:`plateseg.pipeline.folds.make_folds`, ``--check-k``), a fold model fine-tuned from the shipped
weights without each fold (:func:`plateseg.pipeline.validation.train_fold`), and the fold model and the shipped
model scored on the fold's images (:func:`plateseg.pipeline.validation.finetune_scores`). The annotated images are
the ``--n-tune`` images of a microscope the set never saw that ``bench/finetune_dsb.py --pool unseen`` fine-tunes
on (same folder, modality and ``--seed``): the other images of that folder, which that benchmark scores, are not
scored here, so choosing a schedule by this table does not look at them.

Run from the repository root (resumable: fold checkpoints in ``--out``/models are reused)::

    .venv/bin/python bench/finetune_schedule.py

Writes the section ``## Fine-tuning schedule (models.source finetune defaults)`` of ``bench/RESULTS.md``, and
``scores.csv``, ``run.log`` in ``--out`` (default ``bench/out/finetune_schedule``).
"""
from __future__ import annotations

import argparse
import datetime as _dt
from pathlib import Path

from plateseg.pipeline.bench import (annotated_subset, command_text, common_args, start_run, unseen_items,
                                     write_section)

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Fine-tuning schedule (models.source finetune defaults)"
SCHEDULES = ["unet:7:1e-4", "unet:7:1e-3", "unet:20:1e-3", "maskrcnn:4:2e-4", "maskrcnn:4:1e-3"]


def parse_schedule(text: str) -> tuple[str, int, float]:
    """``ENGINE:EPOCHS:LR`` as ``(engine, epochs, lr)``.

    Examples
    --------
    >>> parse_schedule("unet:20:1e-3")
    ('unet', 20, 0.001)
    """
    engine, epochs, lr = text.split(":")
    if engine not in ("unet", "maskrcnn"):
        raise argparse.ArgumentTypeError(f"{text}: the engine is unet or maskrcnn")
    return engine, int(epochs), float(lr)


def parse_args(argv=None):
    ap = common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]), "finetune_schedule", REPO)
    ap.add_argument("--set-dir", default=str(REPO / "models" / "dsb2018-fluo"))
    ap.add_argument("--unseen-data", default=str(REPO / ".." / "shared" / "data" / "dsb2018" / "bf_histo"),
                    help="annotated folder of a microscope the set never saw")
    ap.add_argument("--modality", default="histology_color", help="the index.csv modality whose images are used")
    ap.add_argument("--n-tune", type=int, default=20, help="annotated images (the draw of finetune_dsb.py)")
    ap.add_argument("--check-k", type=int, default=3, help="grouped folds of the annotated images")
    ap.add_argument("--schedules", nargs="+", type=parse_schedule, default=[parse_schedule(s) for s in SCHEDULES],
                    metavar="ENGINE:EPOCHS:LR")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    run = start_run(args, ("plateseg.pipeline.train", "plateseg.pipeline.validation", "plateseg.engines"))
    out, log = run.out, run.log

    import numpy as np
    import pandas as pd
    import torch
    import yaml

    from plateseg.config.params import FINETUNE_DEFAULTS, watershed_settings
    from plateseg.engines import unet
    from plateseg.pipeline.folds import make_folds
    from plateseg.pipeline.validation import finetune_scores, train_fold

    set_dir, data = Path(args.set_dir), Path(args.unseen_data).resolve()
    settings = yaml.safe_load((set_dir / "settings.yaml").read_text())
    items = unseen_items(data, args.modality, unet.load_checkpoint(set_dir / "unet.pt", "cpu")[1])
    tune_idx = set(np.random.default_rng(args.seed).choice(len(items), args.n_tune, replace=False).tolist())
    ann = annotated_subset(data, [it[0] for k, it in enumerate(items) if k in tune_idx], out / "annotations")
    folds = make_folds(ann, out / "folds.csv", k=args.check_k, seed=args.seed)
    log.info("%d images of modality %s in %s; %d annotated, in %d grouped folds (%s images)", len(items),
             args.modality, data, len(tune_idx), args.check_k, folds["fold"].value_counts().sort_index().tolist())
    del items

    val = {"unet": {"val_watershed": watershed_settings(settings)},
           "maskrcnn": {"val_score_threshold": settings["maskrcnn"]["score_threshold"]}}
    rows, reused = [], 0
    for engine, epochs, lr in args.schedules:
        defaults = FINETUNE_DEFAULTS[engine]
        params = {**defaults, "epochs": epochs, "lr": lr, "seed": args.seed, "amp": False, "num_workers": 0,
                  "val_every": 10**6, **val[engine]}
        models = out / "models" / f"{engine}_{epochs}_{lr:g}"
        models.mkdir(parents=True, exist_ok=True)
        paths = [models / f"{k}.pt" for k in range(args.check_k)]
        reused += sum(path.exists() for path in paths)
        for k, path in enumerate(paths):
            if not path.exists():
                train_fold(engine, ann, k, path, params, out / "folds.csv", threads=args.threads,
                           initial=set_dir / f"{engine}.pt")
        table = finetune_scores(engine, paths, set_dir / f"{engine}.pt", ann, threads=args.threads)
        mean = table.iloc[-1]
        steps = epochs * -(-defaults["samples_per_epoch"] // defaults["batch_size"])
        rows.append({"engine": engine, "epochs": epochs, "steps": steps, "lr": lr,
                     "default": defaults["epochs"] == epochs and defaults["lr"] == lr,
                     **{f"fold_{r.fold}": r.dsb_map_finetuned for r in table.iloc[:-1].itertuples()},
                     "dsb_map_finetuned": mean["dsb_map_finetuned"], "dsb_map_initial": mean["dsb_map_initial"]})
        log.info("%s %d epochs lr %g: fold models DSB mAP %.3f, the set's model %.3f", engine, epochs, lr,
                 mean["dsb_map_finetuned"], mean["dsb_map_initial"])
    scores = pd.DataFrame(rows)
    scores.to_csv(out / "scores.csv", index=False)

    fold_cols = [c for c in scores.columns if c.startswith("fold_")]
    lines = ["| engine | schedule | " + " | ".join(c.replace("_", " ") for c in fold_cols)
             + " | held-out mean | the set's model | default |",
             "|---|---|" + "---:|" * (len(fold_cols) + 2) + "---|"]
    for r in scores.itertuples():
        lines.append(f"| {r.engine} | {r.epochs} epochs, {r.steps} steps, lr {r.lr:g} | "
                     + " | ".join(f"{getattr(r, c):.3f}" for c in fold_cols)
                     + f" | **{r.dsb_map_finetuned:.3f}** | {r.dsb_map_initial:.3f} | {'yes' if r.default else ''} |")
    best = scores.loc[scores.groupby("engine")["dsb_map_finetuned"].idxmax()]
    best_text = "; ".join(f"{r.engine}: {r.epochs} epochs at lr {r.lr:g} ({r.dsb_map_finetuned:.3f})"
                          for r in best.itertuples())
    reused_text = (f" ({reused} of the {len(args.schedules) * args.check_k} fold models were trained by an earlier run "
                   f"of the command into `--out` and reused)" if reused else "")
    text = f"""{SECTION}

Fine-tuning schedules of `models.source: finetune`, judged as rule `choose_model` judges fine-tuning, on
{len(tune_idx)} annotated images of a microscope the set never saw (`{args.modality}` of
`{Path(args.unseen_data).name}`: the images `bench/finetune_dsb.py --pool unseen` fine-tunes on, seed {args.seed}):
{args.check_k} grouped folds of them, a fold model fine-tuned from the shipped weights without each fold, DSB mAP
over every held-out image (U-Net with the set's watershed, Mask R-CNN at the set's score threshold). The other
images of the folder are not scored here. Settings other than epochs and learning rate: the defaults
(`plateseg.config.params.FINETUNE_DEFAULTS`; the checkpoint's crops and augmentation).

{chr(10).join(lines)}

- Best per engine: {best_text}. "default" marks the schedule of `FINETUNE_DEFAULTS` when this ran.
- Machine (measured by `plateseg.machine`): {run.machine_text()}; torch {torch.__version__}, {args.threads}
  threads. Date {_dt.date.today().isoformat()}; total {run.minutes():.1f} min{reused_text}.
- **Command**: `{command_text("bench/finetune_schedule.py", argv)}`
"""
    write_section(Path(args.results), text, SECTION)
    log.info("wrote %s (%.1f min)", args.results, run.minutes())


if __name__ == "__main__":
    main()
