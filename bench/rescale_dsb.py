"""Benchmark: the shipped U-Net on nuclei of sizes it was not trained on, with and without ``segmentation.rescale: auto``.

Issue 12 (robust to a microscope it never saw; pixel size / nucleus diameter). Images: ``--n-images`` of the
shipped set's picker split (its checkpoints' ``val_ids``: no engine trained on them, and they played no part
in choosing how the diameter is estimated -- that was looked at on two demo fields of the kept-out fold), the
central 256 x 256 px of each. Each is shown at the zooms ``--zooms`` (linear interpolation; the truth by
nearest neighbour), as a microscope with another magnification would show it, and segmented by the shipped
U-Net and the set's watershed exactly as the workflow does: ``none`` (the field as it is) and ``auto``
(:func:`plateseg.pipeline.scale.estimate_well_scale` measures the diameter and picks the zoom;
:func:`plateseg.pipeline.infer.infer_well_maps` and :func:`plateseg.pipeline.watershed.watershed_well` on real
zarr stores).

Run from the repository root::

    .venv/bin/python bench/rescale_dsb.py

Writes the section ``## Rescaling`` of ``bench/RESULTS.md`` and ``per_image.csv``, ``run.log`` in ``--out``
(default ``bench/out/rescale_dsb``).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import shutil
from pathlib import Path

from plateseg.pipeline.bench import command_text, common_args, start_run, write_section

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Rescaling"


def parse_args(argv=None):
    ap = common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]), "rescale_dsb", REPO)
    ap.add_argument("--set-dir", default=str(REPO / "models" / "dsb2018-fluo"))
    ap.add_argument("--n-images", type=int, default=16, help="picker-split images (drawn with --seed)")
    ap.add_argument("--zooms", type=float, nargs="+", default=[0.5, 1.0, 3.0, 6.0])
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    run = start_run(args)
    out, log = run.out, run.log

    import time

    import numpy as np
    import pandas as pd
    import torch
    import yaml
    from scipy import ndimage as ndi

    from plateseg.engines import unet
    from plateseg.engines.scale import median_diameter, model_scale, read_scales
    from plateseg.evaluation.matching import dsb_map
    from plateseg.evaluation.metrics import evaluate_dataset
    from plateseg.io.annotated import load_annotated
    from plateseg.io.ngff import read_labels, write_well_image
    from plateseg.pipeline.infer import infer_well_maps
    from plateseg.pipeline.scale import estimate_well_scale
    from plateseg.pipeline.watershed import watershed_well

    set_dir = Path(args.set_dir)
    checkpoint = set_dir / "unet.pt"
    _, meta = unet.load_checkpoint(checkpoint, "cpu")
    settings = yaml.safe_load((set_dir / "settings.yaml").read_text())
    ws = {"mode": settings["watershed"]["markers"], **{k: v for k, v in settings["watershed"].items() if k != "markers"}}
    val = set(meta["val_ids"])
    items = [it for it in load_annotated(Path(args.data).resolve(), channels="gray")[0] if it[0] in val]
    rng = np.random.default_rng(args.seed)
    items = [items[k] for k in sorted(rng.choice(len(items), min(args.n_images, len(items)), replace=False))]
    trained, _, covered = model_scale(meta)
    log.info("%d picker-split images; the U-Net was trained on nuclei of %s px, covers x%g-%g", len(items),
             trained, *covered)

    work = out / "work"
    rows, truths, preds = [], {}, {}
    for image_id, image, truth in items:
        h, w = truth.shape
        y0, x0 = max(0, (h - 256) // 2), max(0, (w - 256) // 2)
        image, truth = image[..., y0:y0 + 256, x0:x0 + 256], truth[y0:y0 + 256, x0:x0 + 256]
        for z in args.zooms:
            img = ndi.zoom(np.asarray(image, np.float32).reshape(-1, *truth.shape)[0], z, order=1)
            gt = ndi.zoom(truth, z, order=0)
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            write_well_image(work / "image.zarr", {1: img[None]}, ["DNA"], 256, 1.0)
            t0 = time.perf_counter()
            record = estimate_well_scale(work / "image.zarr", work / "scale.json", "auto", checkpoint=checkpoint)
            t_est = time.perf_counter() - t0
            entry = record["fields"]["1"]
            row = {"image": image_id, "zoom": z, "true_diameter": median_diameter(gt),
                   "estimated_diameter": entry["diameter"], "factor": entry["factor"], "estimate_seconds": t_est}
            for mode, scales in (("none", None), ("auto", read_scales(work / "scale.json"))):
                if mode == "auto" and entry["factor"] == 1.0:
                    lab = preds[("none", z)][-1]  # the same computation
                else:
                    infer_well_maps(work / "image.zarr", checkpoint, work / f"maps_{mode}.zarr", tile_size=256,
                                    halo=64, scales=scales)
                    watershed_well(work / f"maps_{mode}.zarr", work / f"labels_{mode}.zarr", ws)
                    lab = read_labels(work / f"labels_{mode}.zarr", 1)
                preds.setdefault((mode, z), []).append(lab)
                row[f"{mode}_dsb_map"] = dsb_map(gt, lab)
            truths.setdefault(z, []).append(gt)
            rows.append(row)
            log.info("%s x%g: true diameter %s, estimated %s, zoom %.3f: mAP none %.3f, auto %.3f", image_id, z,
                     row["true_diameter"] and round(row["true_diameter"], 1), entry["diameter"], entry["factor"],
                     row["none_dsb_map"], row["auto_dsb_map"])
    shutil.rmtree(work, ignore_errors=True)
    per_image = pd.DataFrame(rows)
    per_image.to_csv(out / "per_image.csv", index=False)

    lines = []
    for z in args.zooms:
        sub = per_image[per_image["zoom"] == z]
        s_none = evaluate_dataset(truths[z], preds[("none", z)], tie="gt")[1]
        s_auto = evaluate_dataset(truths[z], preds[("auto", z)], tie="gt")[1]
        ok = sub.dropna(subset=["true_diameter", "estimated_diameter"])
        ratio = (ok["estimated_diameter"] / ok["true_diameter"]).median() if len(ok) else float("nan")
        lines.append(f"| x{z:g} | {sub['true_diameter'].median():.1f} | {ratio:.2f} | "
                     f"{(sub['factor'] != 1.0).mean():.0%} | {s_none['mean_dsb_map']:.3f} | "
                     f"{s_auto['mean_dsb_map']:.3f} | {s_none['pooled_f1_50']:.3f} | {s_auto['pooled_f1_50']:.3f} |")
    text = f"""{SECTION}

The shipped U-Net (`{checkpoint.relative_to(REPO) if checkpoint.is_relative_to(REPO) else checkpoint}`, trained on
nuclei of {trained[0]:.1f}-{trained[1]:.1f} px, the 5th-95th percentile of its training images' median diameters,
with scale augmentation x{covered[0]:g}-{covered[1]:g}) on {len(items)} picker-split images (central 256 px;
no engine trained on them, and they were not used to design the estimate) shown at other magnifications:
`segmentation.rescale: none` against `auto` (rule `estimate_scale`, then the zoomed inference and watershed of
the workflow, on real zarr stores). DSB mAP is the mean over images; F1@0.5 pooled over objects. "estimated /
true" is the median over images of the estimated diameter over the truth's median diameter.

| zoom | true diameter px (median) | estimated / true | fields rescaled | mAP none | mAP auto | F1@0.5 none | F1@0.5 auto |
|---|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(lines)}

- Estimate: {per_image['estimate_seconds'].mean():.1f} s per field on average (probes at zooms 2, 1, 0.5, 0.25
  of the central crop).
- Machine (measured by `plateseg.machine`): {run.machine_text()}; torch {torch.__version__}, {args.threads}
  threads. Date {_dt.date.today().isoformat()}; total {run.minutes():.1f} min.
- Command: `{command_text("bench/rescale_dsb.py", argv)}`; per image: `{(out / 'per_image.csv').relative_to(REPO)
  if out.is_relative_to(REPO) else out / 'per_image.csv'}`.
"""
    write_section(Path(args.results), text, SECTION)
    log.info("wrote %s (%.1f min)", args.results, run.minutes())


if __name__ == "__main__":
    main()
