"""Benchmark: the pick's coverage rule on the shipped set's kept-out fold.

:func:`plateseg.ensemble.pick.pick` drops a candidate with more than ``max_covered`` of its pixels already taken
by kept ones (the rule of panoptic merging, detectron2's ``overlap_threshold`` 0.5, adopted as is: not chosen
here). Before it, a small mask inside a larger kept nucleus (IoU under ``nms_iou``) was kept as the rim of
pixels the larger one left free. This benchmark scores the shipped set (``models/dsb2018-fluo``: engines,
picker, the thresholds of its ``settings.yaml``) on its kept-out fold with the rule off (``max_covered`` 1.0,
the pick the set's card was made with) and on (0.5), from the same candidates.

Run from the repository root::

    .venv/bin/python bench/pick_coverage_dsb.py

Writes the section ``## Pick: coverage rule (shipped set, kept-out fold)`` of ``bench/RESULTS.md`` and
``metrics.csv``, ``run.log`` in ``--out`` (default ``bench/out/pick_coverage_dsb``).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from plateseg.pipeline.bench import command_text, common_args, start_run, table_markdown, write_section

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Pick: coverage rule (shipped set, kept-out fold)"
COLUMNS = [("DSB mAP", "mean_dsb_map"), ("AP50", "coco_AP50"), ("F1@0.5", "pooled_f1_50"),
           ("P@0.7", "pooled_precision_70"), ("R@0.7", "pooled_recall_70"), ("n pred", "total_n_pred")]


def parse_args(argv=None):
    ap = common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]), "pick_coverage_dsb", REPO)
    ap.add_argument("--set-dir", default=str(REPO / "models" / "dsb2018-fluo"))
    ap.add_argument("--max-covered", type=float, nargs="+", default=[1.0, 0.5])
    return ap.parse_args(argv)


def main(argv=None):
    import pandas as pd
    import yaml

    from plateseg.config.params import watershed_settings

    from plateseg.engines import maskrcnn, unet
    from plateseg.ensemble.compare import compare_methods
    from plateseg.ensemble.picker import Picker
    from plateseg.io.annotated import load_annotated
    from plateseg.pipeline.candidates import image_candidates

    args = parse_args(argv)
    run = start_run(args)
    log, out = run.log, Path(args.out)
    set_dir = Path(args.set_dir)
    engines = {"unet": unet.load_checkpoint(set_dir / "unet.pt", "cpu"),
               "maskrcnn": maskrcnn.load_checkpoint(set_dir / "maskrcnn.pt", "cpu")}
    settings = yaml.safe_load((set_dir / "settings.yaml").read_text())
    picker = Picker.load(set_dir / "picker.json")
    kept_out = set(engines["unet"][1]["kept_out_ids"])
    items = [it for it in load_annotated(Path(args.data).resolve(), channels="gray")[0] if it[0] in kept_out]
    log.info("kept-out fold: %d images", len(items))
    ws = watershed_settings(settings)
    t0 = time.perf_counter()
    table, labels = image_candidates(items, engines["unet"], engines["maskrcnn"], 256, 64, 2, ws,
                                     settings["maskrcnn"], "cpu", name="kept-out fold")
    seconds = time.perf_counter() - t0
    table["predicted_iou"] = picker.predict(table)
    truths = {it[0]: it[2] for it in items}
    rows = []
    for mc in args.max_covered:
        summary, _ = compare_methods(table, labels, truths, **settings["ensemble"], max_covered=mc)
        for row in summary.to_dict("records"):
            if row["method"] in ("ensemble", "oracle") or mc == args.max_covered[0]:
                name = row["method"] if row["method"] not in ("ensemble", "oracle") else f"{row['method']}, max_covered {mc:g}"
                rows.append({**row, "method": name, "max_covered": mc})
                log.info("%s: mAP %.4f", name, row["mean_dsb_map"])
    metrics = pd.DataFrame(rows)
    metrics.to_csv(out / "metrics.csv", index=False)
    text = f"""{SECTION}

`{command_text("bench/pick_coverage_dsb.py", argv)}`; {run.machine_text()}; candidates of the
{len(items)} kept-out images (both engines, the set's thresholds {settings['ensemble']}) in {seconds / 60:.1f} min.
The pick drops a candidate with more than `max_covered` of its pixels taken by kept ones (1.0: the rule off, as
when the set's card was made; 0.5: the default, taken from panoptic merging, not chosen on these images).

{table_markdown(rows, COLUMNS)}
"""
    write_section(REPO / "bench" / "RESULTS.md", text, SECTION)
    log.info("wrote %s", REPO / "bench" / "RESULTS.md")


if __name__ == "__main__":
    main()
