"""Train the shipped model set ``dsb2018-fluo`` (U-Net, Mask R-CNN, LightGBM picker) and write its model card.

One command, resumable (each stage is skipped when its output exists; the engines' training is chunked and
resumes after the last finished chunk), seeded, each engine within a wall-time budget::

    .venv/bin/python bench/train_shipped.py

Data: ``../shared/data/dsb2018/fluo`` (CC0; ``--data`` or ``$PLATESEG_DSB2018``). The split is
:func:`plateseg.pipeline.bench.dsb_split`: grouped fold ``--fold`` (default 1) of ``grouped_folds(k=5,
seed=0)`` is **kept out of every shipped model** and scores the set; from the other folds, grouped fold 0 of
``--val-groups-k`` (default 5) is the *picker split*: neither engine trains on it, the watershed and
detection thresholds are chosen on it, and the picker trains on its candidates (held-out candidates: the
picker never sees candidates of an image its engines saw). The engines train on the rest.

Stages (``--stage``, default all in order):

``unet``, ``maskrcnn``
    train one engine (:func:`plateseg.pipeline.bench.train_in_chunks`, settings of ``--config``, the
    training config beside the shipped set, with wide appearance and scale augmentation) ->
    ``<out>/unet.pt`` / ``<out>/maskrcnn.pt``. The two may run at the same time in two processes
    (``--threads 1`` each).
``ensemble``
    thresholds on the picker split, candidates of the picker split and the kept-out fold, the picker, and
    the scores of classical / U-Net / Mask R-CNN / ensemble / oracle on the kept-out fold -> ``<out>/ensemble``.
    The picker also trains on the candidates of *downscaled copies* of the picker-split images
    (:func:`plateseg.pipeline.candidates.downscaled_copies`: nuclei shrunk to median diameters
    ``--picker-copies``, default 12 and 16 px; still images no engine saw), so that it learns small nuclei
    (the picker split has few images of them); in the threshold tuning each copy is held out with its source.
``loto``
    leave-one-type-out: for each of the ``--loto-types`` largest image types (types: image sizes; each DSB2018
    size is one or a few acquisitions), a short U-Net run (``--loto-minutes``) on the engine images of the other
    types, scored on the images of that type the set never trained on, beside the shipped U-Net on the same
    images and the short model on the other types' images -> ``<out>/loto`` (a section of the card).
``export``
    the set in ``--set-dir`` (default ``models/dsb2018-fluo``): fp16 weights, ``picker.json``,
    ``settings.yaml`` (the chosen thresholds, read by the workflow with ``models.set``) and the model card
    ``README.md``, generated from this run's outputs.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from plateseg.pipeline.bench import common_args, dsb_split, start_run, train_in_chunks, workflow_config

REPO = Path(__file__).resolve().parents[1]
SET_DIR = REPO / "models" / "dsb2018-fluo"
STAGES = ("unet", "maskrcnn", "ensemble", "loto", "export")
# the file (in --out) whose presence means a stage has finished and is skipped
DONE = {"unet": "unet.pt", "maskrcnn": "maskrcnn.pt", "ensemble": "ensemble/run.json", "loto": "loto/card.md"}


def parse_args(argv=None):
    ap = common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]), "shipped", REPO)
    ap.set_defaults(fold=1, val_groups_k=5, config=str(SET_DIR / "train-config.yaml"))
    ap.add_argument("--stage", choices=STAGES, action="append",
                    help="run only these stages (repeatable; default: all, skipping finished ones)")
    ap.add_argument("--set-dir", default=str(SET_DIR), help="where the exported set goes")
    ap.add_argument("--unet-minutes", type=float, default=60.0, help="wall-time budget of U-Net training")
    ap.add_argument("--maskrcnn-minutes", type=float, default=130.0, help="wall-time budget of Mask R-CNN training")
    ap.add_argument("--loto-minutes", type=float, default=4.0,
                    help="wall-time budget of each leave-one-type-out U-Net")
    ap.add_argument("--loto-types", type=int, default=3, help="how many of the largest image types are left out")
    ap.add_argument("--picker-copies", type=float, nargs="*", default=[12.0, 16.0], metavar="PX",
                    help="median nucleus diameters (px) of the downscaled copies of the picker-split images whose "
                         "candidates the picker also trains on (none: no copies)")
    ap.add_argument("--picker-copies-max-zoom", type=float, default=0.85,
                    help="largest zoom of a copy (a copy needing more is not made)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2-minute budgets, few images")
    return ap.parse_args(argv)


# chunked-training settings of each engine (bench/unet_dsb.py and bench/maskrcnn_dsb.py chose these on CPU)
CHUNKS = {
    "unet": dict(batch=8, lr=2e-3, warmup_steps=50, epoch_steps=40, first_chunk_steps=120, min_chunk_steps=120),
    "maskrcnn": dict(batch=4, lr=1e-3, warmup_steps=100, epoch_steps=50, first_chunk_steps=150, min_chunk_steps=150),
}


def split(args):
    """``(items, kept-out fold, picker split, engine training images, image -> group)``."""
    items, test, val, train, group_of = dsb_split(Path(args.data).resolve(), args.fold, args.k, args.val_groups_k,
                                                  args.seed, groups=True)
    if args.quick:
        test, val, train = test[:12], val[:12], train[:24]
    return items, test, val, train, group_of


def train_engine(name, args, log):
    """Stage ``unet`` / ``maskrcnn``: train on the engine split, save ``<out>/<name>.pt``."""
    from plateseg.config.params import maskrcnn_settings, unet_settings
    from plateseg.engines import maskrcnn, unet
    from plateseg.io.annotated import data_hash

    out = Path(args.out)
    _, test, val, train, _ = split(args)
    config = workflow_config(args.config)
    if name == "unet":
        engine, base = unet, dict(unet_settings(config, "all"), channels_last=False)
        fn, cls = unet.train_unet, unet.UNetParams
        build = lambda p: unet._model_from_arch(unet._arch(p))  # noqa: E731
    else:
        engine, base = maskrcnn, dict(maskrcnn_settings(config, "all"), box_batch_size_per_image=256)
        fn, cls = maskrcnn.train_maskrcnn, maskrcnn.MaskRCNNParams
        build = maskrcnn.build_maskrcnn
    base.update(device="cpu", amp=False, num_workers=0, val_every=10**6)
    minutes = args.unet_minutes if name == "unet" else args.maskrcnn_minutes
    chunk_args = SimpleNamespace(**CHUNKS[name], seed=args.seed, budget_minutes=2.0 if args.quick else minutes)
    if args.quick:
        chunk_args.epoch_steps, chunk_args.first_chunk_steps, chunk_args.min_chunk_steps = 4, 8, 8
    base["batch_size"] = chunk_args.batch
    log.info("%s: %d training images (fold %d kept out: %d images; picker split %d images), budget %.0f min",
             name, len(train), args.fold, len(test), len(val), chunk_args.budget_minutes)
    model, params, history, info = train_in_chunks(
        fn, cls, [it[1] for it in train], [it[2] for it in train], base, chunk_args, log,
        train_log=logging.getLogger(f"bench.{name}"), state=out / f"{name}.chunks.pt", build=build)
    meta = engine.checkpoint_meta(params, data_hash=data_hash(Path(args.data).resolve()), history=history,
                                  fold=args.fold, k=args.k, train_ids=[it[0] for it in train],
                                  val_ids=[it[0] for it in val], test_ids=[it[0] for it in test],
                                  bench={**info, "threads": args.threads})
    engine.save_checkpoint(out / f"{name}.pt", model, meta)
    log.info("%s: %s", name, {k: v for k, v in info.items() if k != "chunks"})


TABLE = [("DSB mAP", "mean_dsb_map"), ("AP50", "coco_AP50"), ("F1@0.5", "pooled_f1_50"),
         ("P@0.7", "pooled_precision_70"), ("R@0.7", "pooled_recall_70"), ("Dice", "mean_dice"),
         ("over", "total_over"), ("under", "total_under"), ("n pred", "total_n_pred")]
TILE, HALO = 256, 64


def stage_ensemble(args, run):
    """Thresholds on the picker split; the picker on its candidates; every method scored on the kept-out fold."""
    import numpy as np
    import pandas as pd

    from ensemble_dsb import tune_pick
    from unet_dsb import CENTRE_GRID, tune_classical, tune_watershed

    from plateseg.config.params import picker_settings
    from plateseg.engines import maskrcnn, unet
    from plateseg.ensemble.compare import compare_methods
    from plateseg.ensemble.picker import PickerParams, train_picker
    from plateseg.evaluation.metrics import dsb_map_dataset
    from plateseg.pipeline.candidates import downscaled_copies, image_candidates
    from plateseg.segment.classical import segment_classical

    out, log = Path(args.out), run.log
    ens = out / "ensemble"
    ens.mkdir(parents=True, exist_ok=True)
    _, test, val, train, _ = split(args)
    engines = {name: getattr(mod, "load_checkpoint")(out / f"{name}.pt", "cpu")
               for name, mod in (("unet", unet), ("maskrcnn", maskrcnn))}
    for name, (_, meta) in engines.items():
        if meta.get("train_ids") != [it[0] for it in train]:
            raise SystemExit(f"{out / name}.pt was trained on another split; remove it and rerun")
    config = workflow_config(args.config)
    val_truths = [it[2] for it in val]
    t0 = time.perf_counter()
    # U-Net watershed (centre markers) on the picker split
    val_maps = [unet.predict_maps(*engines["unet"], it[1], tile_size=TILE, halo=HALO, batch_size=4, device="cpu")
                for it in val]
    ws, ws_val, ws_grid = tune_watershed(val_maps, val_truths, "centre", CENTRE_GRID, log)
    watershed = {"mode": "centre", **ws}
    del val_maps
    # Mask R-CNN score threshold on the picker split
    min_area = int(config["maskrcnn"]["min_area"])
    thr_grid = []
    for thr in (0.5, 0.7, 0.9):
        labs = [maskrcnn.predict_instances(*engines["maskrcnn"], it[1], tile_size=TILE, halo=HALO, batch_size=2,
                                           device="cpu", score_threshold=thr, min_area=min_area)[0] for it in val]
        thr_grid.append({"score_threshold": thr, "val_dsb_map": dsb_map_dataset(zip(val_truths, labs), tie="gt")})
        log.info("Mask R-CNN score threshold %.1f: picker-split mAP %.4f", thr, thr_grid[-1]["val_dsb_map"])
    best_thr = max(thr_grid, key=lambda r: r["val_dsb_map"])
    detection = {"score_threshold": best_thr["score_threshold"], "mask_threshold": 0.5, "min_area": min_area}
    # classical baseline settings on engine-training images (the baseline is not part of the set)
    grid_items = train[:: max(1, len(train) // 40)][:40]
    cl_settings, cl_grid_map, _ = tune_classical([it[1] for it in grid_items], [it[2] for it in grid_items], log)
    tuning_seconds = time.perf_counter() - t0

    picker_params = PickerParams.coerce(picker_settings(config))
    t0 = time.perf_counter()
    val_table, val_labels = image_candidates(val, engines["unet"], engines["maskrcnn"], TILE, HALO, 2, watershed,
                                             detection, "cpu", name="picker split")
    # more small-nucleus training candidates: shrunk copies of the picker-split images (no engine saw them at
    # any scale), each held out with its source image in the tuning below
    copies = downscaled_copies(val, args.picker_copies or (), max_zoom=args.picker_copies_max_zoom)
    copy_table, _ = image_candidates([c[:3] for c in copies], engines["unet"], engines["maskrcnn"], TILE, HALO, 2,
                                     watershed, detection, "cpu", name="picker-split copies")
    if len(copy_table):
        copy_table["source"] = copy_table["image"].map({c[0]: c[3] for c in copies})
    types = picker_types(val)
    min_iou, nms_iou, pick_grid = tune_pick(val_table, val_labels, val_truths, picker_params, log, types=types,
                                            extra=copy_table)
    picker = train_picker(pd.concat([val_table, copy_table.drop(columns=["source"], errors="ignore")],
                                    ignore_index=True), params=picker_params, log=log)
    picker.meta["copies"] = {"diameters": list(args.picker_copies or ()), "max_zoom": args.picker_copies_max_zoom,
                             "n_copies": len(copies), "n_candidates": int(len(copy_table))}
    picker.save(ens / "picker.json")
    picker.importances().to_csv(ens / "importances.csv", index=False)
    picker_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    test_table, test_labels = image_candidates(test, engines["unet"], engines["maskrcnn"], TILE, HALO, 2, watershed,
                                               detection, "cpu", name="kept-out fold")
    test_seconds = time.perf_counter() - t0
    test_table["predicted_iou"] = picker.predict(test_table)
    truths = {it[0]: it[2] for it in test}
    classical = {it[0]: segment_classical(it[1][0], **cl_settings) for it in test}
    summary, per_image = compare_methods(test_table, test_labels, truths, {"classical": classical},
                                         min_iou=min_iou, nms_iou=nms_iou)
    summary = summary.set_index("method").loc[["classical", "unet", "maskrcnn", "ensemble", "oracle"]].reset_index()
    summary.to_csv(ens / "metrics.csv", index=False)
    for name, df in per_image.items():
        df.to_csv(ens / f"per_image_{name}.csv", index=False)
    pd.DataFrame(ws_grid).to_csv(ens / "tuning_watershed.csv", index=False)
    pd.DataFrame(thr_grid).to_csv(ens / "tuning_detection.csv", index=False)
    pd.DataFrame(pick_grid).to_csv(ens / "tuning_pick.csv", index=False)
    for row in summary.itertuples():
        log.info("kept-out fold: %s mAP %.4f", row.method, row.mean_dsb_map)
    record = {
        "watershed": watershed, "watershed_val_map": ws_val, "detection": detection,
        "detection_val_map": best_thr["val_dsb_map"], "ensemble": {"min_iou": min_iou, "nms_iou": nms_iou},
        "pick_val_map": next(r["val_type_mean_map"] for r in pick_grid
                             if (r["min_iou"], r["nms_iou"]) == (min_iou, nms_iou)),
        "pick_types": {k: int(v) for k, v in pd.Series(list(types.values())).value_counts().items()},
        "classical": cl_settings,
        "classical_grid_map": cl_grid_map, "n_test": len(test), "n_val": len(val), "n_train": len(train),
        "n_test_objects": int(sum(len(np.unique(g)) - 1 for g in truths.values())),
        "n_val_candidates": len(val_table), "n_test_candidates": len(test_table),
        "copies": picker.meta["copies"],
        "seconds": {"tuning": tuning_seconds, "picker": picker_seconds, "kept_out": test_seconds},
        "machine": run.machine_text(), "tile": TILE, "halo": HALO,
    }
    (ens / "run.json").write_text(json.dumps(record, indent=1, default=str))


def picker_types(items, min_images: int = 8) -> dict:
    """Image id -> type (:func:`image_type`) of the picker split, types of fewer than ``min_images`` as "other"."""
    import pandas as pd

    kinds = {it[0]: image_type(it[1]) for it in items}
    counts = pd.Series(list(kinds.values())).value_counts()
    return {i: k if counts[k] >= min_images else "other" for i, k in kinds.items()}


def image_type(image) -> str:
    """The acquisition type of an image for the leave-one-type-out check: its size."""
    return f"{image.shape[-2]}x{image.shape[-1]}"


def stage_loto(args, run):
    """Leave-one-type-out U-Nets: how the models do on an image type they never saw."""
    import pandas as pd

    from plateseg.config.params import unet_settings
    from plateseg.engines import unet
    from plateseg.evaluation.metrics import evaluate_dataset
    from plateseg.pipeline.bench import table_markdown
    from plateseg.segment.watershed import instances_from_maps

    out, log = Path(args.out), run.log
    folder = out / "loto"
    folder.mkdir(parents=True, exist_ok=True)
    ens = json.loads((out / "ensemble" / "run.json").read_text())
    _, test, val, train, _ = split(args)
    unseen = test + val  # never trained on by the shipped engines
    counts = pd.Series([image_type(it[1]) for it in train + unseen]).value_counts()
    types = list(counts.index[: args.loto_types])
    shipped = unet.load_checkpoint(out / "unet.pt", "cpu")
    ws = ens["watershed"]

    def score(engine, items):
        preds = [instances_from_maps(unet.predict_maps(*engine, it[1], tile_size=TILE, halo=HALO, batch_size=4,
                                                       device="cpu"), **ws) for it in items]
        return evaluate_dataset([it[2] for it in items], preds, tie="gt")[1]

    config = workflow_config(args.config)
    base = dict(unet_settings(config, "all"), channels_last=False, device="cpu", amp=False, num_workers=0,
                val_every=10**6, batch_size=CHUNKS["unet"]["batch"])
    rows = []
    for kind in types:
        left_out = [it for it in unseen if image_type(it[1]) == kind][:60]
        others = [it for it in unseen if image_type(it[1]) != kind][:60]
        rest = [it for it in train if image_type(it[1]) != kind]
        if not left_out or not rest:
            continue
        chunk_args = SimpleNamespace(**{**CHUNKS["unet"], "first_chunk_steps": 80, "min_chunk_steps": 80},
                                     seed=args.seed, budget_minutes=1.0 if args.quick else args.loto_minutes)
        log.info("type %s left out: %d training images (of %d), scored on %d unseen images of the type", kind,
                 len(rest), len(train), len(left_out))
        model, params, _, info = train_in_chunks(unet.train_unet, unet.UNetParams, [it[1] for it in rest],
                                                 [it[2] for it in rest], base, chunk_args, log,
                                                 train_log=logging.getLogger("bench.unet"))
        short = (model, unet.checkpoint_meta(params))
        for name, engine, items in (("shipped U-Net (saw the type)", shipped, left_out),
                                    ("short U-Net without the type", short, left_out),
                                    ("short U-Net without the type, on the other types", short, others)):
            summary = score(engine, items)
            rows.append({"method": f"{kind}: {name}", "type": kind, "model": name, "total_images": len(items),
                         "train_steps": info["done_steps"] if "short" in name else None, **summary})
            log.info("type %s, %s: mAP %.4f", kind, name, summary["mean_dsb_map"])
    table = pd.DataFrame(rows)
    table.to_csv(folder / "loto.csv", index=False)
    cols = [("images", "total_images"), ("DSB mAP", "mean_dsb_map"), ("F1@0.5", "pooled_f1_50"), ("Dice", "mean_dice")]
    lines = []
    for kind in types:
        sub = table[table["type"] == kind].set_index("model")
        if len(sub) == 3:
            lines.append(f"- **{kind}**: never seen {sub.iloc[1]['mean_dsb_map']:.3f} vs "
                         f"{sub.iloc[2]['mean_dsb_map']:.3f} on the other types (same short model), shipped U-Net "
                         f"{sub.iloc[0]['mean_dsb_map']:.3f}.")
    text = f"""## Leave-one-type-out check (a microscope the set never saw)

Types are image sizes (each DSB2018 size is one or a few acquisitions); the {len(types)} largest:
{', '.join(f'{t} ({int(counts[t])} images)' for t in types)}. For each, a U-Net trained for
{1.0 if args.quick else args.loto_minutes:g} min (`--loto-minutes`; the shipped U-Net trained for an hour) on the engine-training images
of the other types, scored on up to 60 images of the left-out type that no shipped model trained on (kept-out fold
and picker split), beside the same short model on up to 60 such images of the other types, and the shipped U-Net
(which saw the type) on the left-out images. Watershed: the set's. The drop from "other types" to "never seen" is
what a new acquisition type costs; the gap to the shipped U-Net mixes that with the shorter training.

{table_markdown(table.to_dict('records'), cols)}

{chr(10).join(lines)}
"""
    (folder / "card.md").write_text(text)


def stage_export(args, run):
    """The set in ``--set-dir``: fp16 checkpoints, picker, settings.yaml and the model card."""
    import shutil

    import pandas as pd
    import yaml

    from plateseg.engines import maskrcnn, unet
    from plateseg.engines.scale import diameter_record
    from plateseg.pipeline.bench import relative_path, table_markdown

    out, log, dest = Path(args.out), run.log, Path(args.set_dir)
    ens = json.loads((out / "ensemble" / "run.json").read_text())
    _, test, val, train, _ = split(args)
    diameters = diameter_record([it[2] for it in train])
    diameter, (d_low, d_high) = diameters["nucleus_diameter"], diameters["nucleus_diameter_range"]
    dest.mkdir(parents=True, exist_ok=True)
    info = {}
    for name, mod in (("unet", unet), ("maskrcnn", maskrcnn)):
        model, meta = mod.load_checkpoint(out / f"{name}.pt", "cpu")
        meta.update(model_set=dest.name, **diameters, kept_out_fold=args.fold,
                    kept_out_ids=meta.pop("test_ids"), licence="CC0-1.0 (training data: DSB2018 stage1_train)")
        meta.pop("state_dict", None)
        mod.save_checkpoint(dest / f"{name}.pt", model, meta, half=True)
        info[name] = meta
    from plateseg.ensemble.picker import Picker

    picker = Picker.load(out / "ensemble" / "picker.json")
    picker.meta.update(model_set=dest.name, train_ids=[it[0] for it in val], kept_out_fold=args.fold,
                       data_hash=info["unet"]["data_hash"], settings=ens["ensemble"])
    picker.save(dest / "picker.json")
    if Path(args.config).resolve() != (dest / "train-config.yaml").resolve():
        shutil.copyfile(args.config, dest / "train-config.yaml")
    settings = {"watershed": {"markers": "centre", **{k: v for k, v in ens["watershed"].items() if k != "mode"}},
                "maskrcnn": ens["detection"], "ensemble": ens["ensemble"]}
    (dest / "settings.yaml").write_text(
        "# Inference settings chosen with the set (bench/train_shipped.py, on its picker split); a run using the set\n"
        "# takes them as defaults, keys of the run's own config win.\n" + yaml.safe_dump(settings, sort_keys=True))
    metrics = pd.read_csv(out / "ensemble" / "metrics.csv")
    sizes = {p.name: p.stat().st_size for p in sorted(dest.iterdir()) if p.is_file() and p.name != "README.md"}
    u, m = info["unet"], info["maskrcnn"]

    def training_text(meta):
        b = meta["bench"]
        threads = f", {b['threads']} torch thread(s)" if "threads" in b else ""
        return (f"{b['done_steps']} steps ({b['done_epochs']} epochs of {b['epoch_steps']} steps, "
                f"{len(b['chunks'])} chunks) in {b['train_seconds'] / 60:.1f} min{threads}; final loss {b['final_loss']:.4f}")

    aug = {k: u["params"][k] for k in ("scale_range", "intensity_jitter", "gamma_range", "background", "blur_sigma",
                                        "noise_std", "flips", "rot90")}
    mt = metrics.set_index("method")
    card = f"""# Model set `dsb2018-fluo`

Nuclei in grayscale fluorescence images (DNA stains: Hoechst, DAPI), trained on the DSB2018 `stage1_train`
fluorescence images. What the workflow uses with `models.source: pretrained` (the default) and
`models.set: dsb2018-fluo`. This card is written by the command that trains the set; its numbers come from that run.

## Files

| file | what | bytes |
|---|---|---:|
""" + "".join(f"| `{n}` | {d} | {sizes[n]:,} |\n" for n, d in (
        ("unet.pt", f"U-Net (smp.Unet, {u['arch']['encoder_name']} encoder, depth {u['arch']['encoder_depth']}, decoder "
                    f"{u['arch']['decoder_channels']}; heads {', '.join(u['heads'])}), float16 weights"),
        ("maskrcnn.pt", f"Mask R-CNN (torchvision, {m['params']['backbone']}-FPN {m['params']['fpn_channels']} channels, box head "
                        f"{m['params']['box_head_dim']}, mask head {m['params']['mask_head_channels']}), float16 weights"),
        ("picker.json", "LightGBM picker (predicted IoU of each candidate object)"),
        ("settings.yaml", "watershed, detection and pick thresholds chosen with the set"),
        ("train-config.yaml", "the training settings (`--config` of the command)")) if n in sizes) + f"""
All files together: {sum(sizes.values()) / 1e6:.1f} MB.

Both engines: 1 input channel (the nuclear stain), normalised per image by the {u['normalization']['p_low']} /
{u['normalization']['p_high']} percentiles; trained at a median nucleus diameter of **{diameter:.1f} px**, the
training images' median diameters spanning {d_low:.1f}-{d_high:.1f} px (5th-95th percentile; recorded in each
checkpoint as `nucleus_diameter` and `nucleus_diameter_range`; the DSB2018 images have no pixel size, so
`pixel_size` is null). With `segmentation.rescale: auto` (the default) a field whose nuclei lie outside that
range times the scale augmentation's zoom range is zoomed to it before inference (rule `estimate_scale`).

## Training data

`../shared/data/dsb2018/fluo` (541 images, CC0: Kaggle 2018 Data Science Bowl stage1_train / BBBC038 with the
community mask fixes; see its README), data hash `{u['data_hash']}` (`plateseg.io.annotated.data_hash`).
Split (`plateseg.pipeline.bench.dsb_split`, groups of near-duplicate crops kept together):

- **kept out of every file of the set**: grouped fold {args.fold} of `grouped_folds(k={args.k}, seed=0)`,
  {len(test)} images, {ens['n_test_objects']} nuclei; chosen before training, used only for the scores below;
- **picker split**: {len(val)} images (grouped fold 0 of {args.val_groups_k} of the rest): neither engine trained on
  them; the thresholds are chosen on them and the picker trains on their {ens['n_val_candidates']} candidates{copies_text(ens)};
- **engine training**: the other {len(train)} images.

## Command

```
{cmd_text(args)}
```

Resumable (rerun the same command: finished stages are skipped, training resumes after its last chunk), seeded
(`--seed {args.seed}`). Stages and their outputs: `bench/train_shipped.py` docstring. The budgets are wall time
(`--unet-minutes {args.unet_minutes:g}`, `--maskrcnn-minutes {args.maskrcnn_minutes:g}`), so the step counts
below depend on the machine and on whether the engines train side by side (`--stage unet` and `--stage maskrcnn`
in two processes with `--threads 1`, as for this set) or one after the other.

- U-Net: {training_text(u)}; crops {u['params']['crop_size']} px, batch {u['params']['batch_size']}, AdamW, warm-up +
  cosine per chunk.
- Mask R-CNN: {training_text(m)}; crops {m['params']['crop_size']} px, batch {m['params']['batch_size']}.
- Augmentation (both): {aug}.
- Chosen on the picker split: watershed {ens['watershed']} (mAP {ens['watershed_val_map']:.3f}); Mask R-CNN
  {ens['detection']} (mAP {ens['detection_val_map']:.3f}); pick {ens['ensemble']} (mean over image types of the
  per-type mAP {ens['pick_val_map']:.3f}, each type's candidates predicted by a picker trained on the other types:
  {', '.join(f'{k} {v} images' for k, v in ens['pick_types'].items())}).
- Machine (measured): {ens['machine']}; torch {u['versions']['torch']}.

## Scores on the kept-out fold

{len(test)} images, {ens['n_test_objects']} nuclei, never seen by any file of the set. DSB mAP: mean over images of
the mean over IoU thresholds 0.5:0.05:0.95 of TP/(TP+FP+FN) (a match needs IoU > t); AP50 COCO-style; F1@0.5 and
P/R@0.7 pooled over objects; Dice the mean per-image foreground Dice; over/under-segmentations (IoP/IoG 0.5). The
oracle keeps the candidate with the best *true* IoU (the ceiling of any picker over these candidates). Classical:
`segment_classical` with {ens['classical']} (best of a grid on engine-training images).

{table_markdown(metrics.to_dict('records'), TABLE)}

Ensemble minus U-Net: {mt.loc['ensemble', 'mean_dsb_map'] - mt.loc['unet', 'mean_dsb_map']:+.3f} mAP; oracle minus
ensemble: {mt.loc['oracle', 'mean_dsb_map'] - mt.loc['ensemble', 'mean_dsb_map']:+.3f}. Kept objects: ensemble
{mt.loc['ensemble', 'share_unet']:.0%} U-Net / {mt.loc['ensemble', 'share_maskrcnn']:.0%} Mask R-CNN.
Per-image scores: `{relative_path(out / 'ensemble', REPO)}/per_image_*.csv` of the run.

## Licence

Weights and picker: CC0-1.0, like the training data (DSB2018 stage1_train, Broad Institute, CC0).
"""
    loto = out / "loto" / "card.md"
    if loto.is_file():
        card += "\n" + loto.read_text()
    (dest / "README.md").write_text(card)
    log.info("wrote %s (%s)", dest, ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in sizes.items()))


def copies_text(ens) -> str:
    """The card's words on the picker's downscaled copies (nothing for a run without them)."""
    c = ens.get("copies") or {}
    if not c.get("n_copies"):
        return ""
    return (f" and the {c['n_candidates']} candidates of {c['n_copies']} downscaled copies of them (nuclei shrunk to "
            f"median diameters of {', '.join(f'{d:g}' for d in c['diameters'])} px, zoom at most {c['max_zoom']:g}; "
            "`downscaled_copies`), held out with their source image when the pick thresholds are chosen")


def cmd_text(args) -> str:
    from plateseg.pipeline.bench import command_text

    return command_text("bench/train_shipped.py", sys.argv[1:] if args.stage is None else
                        [a for a in sys.argv[1:] if a not in ("--stage",) + STAGES])


def main(argv=None):
    args = parse_args(argv)
    stages = args.stage or list(STAGES)
    run = start_run(args, ("plateseg.pipeline.candidates",))
    out, log = run.out, run.log
    for name in ("unet", "maskrcnn"):
        logging.getLogger(f"bench.{name}").setLevel(logging.INFO)
    for stage in stages:
        t0 = time.perf_counter()
        done = DONE.get(stage)  # the output that marks a finished stage (export always runs)
        if done is not None and (out / done).is_file():
            log.info("stage %s: %s exists, skipped", stage, out / done)
            continue
        if stage in ("unet", "maskrcnn"):
            train_engine(stage, args, log)
        else:
            globals()[f"stage_{stage}"](args, run)
        log.info("stage %s done in %.1f min", stage, (time.perf_counter() - t0) / 60)


if __name__ == "__main__":
    sys.exit(main())
