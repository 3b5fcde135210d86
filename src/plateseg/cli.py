"""Command-line entry point: ``plateseg <command> ...``.

Each command group is registered by a function ``_add_<group>(subparsers)`` listed in
``_COMMANDS``; it adds its parser(s) and sets ``func`` (called with the parsed namespace, returns
an exit code or None). Heavy imports happen inside the handlers so ``plateseg --help`` stays fast.
Log messages go to stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys

log = logging.getLogger("plateseg")


# ---- synth -------------------------------------------------------------------------------------


def _synth_demo(args: argparse.Namespace) -> int:
    from plateseg.io.synth import write_demo_run

    truth = write_demo_run(
        args.out, plate=args.plate, rows=args.rows, columns=tuple(args.columns),
        fields=args.fields, shape=(args.size, args.size), seed=args.seed,
    )
    log.info("wrote %d fields (%d nuclei) to %s", len(truth), int(truth.n_nuclei.sum()), args.out)
    return 0


def _synth_train(args: argparse.Namespace) -> int:
    from plateseg.io.synth import write_training_set

    index = write_training_set(args.out, n_images=args.n, shape=(args.size, args.size), seed=args.seed)
    log.info("wrote %d images (%d objects) to %s", len(index), int(index.n_objects.sum()), args.out)
    return 0


def _add_synth(subparsers) -> None:
    p = subparsers.add_parser("synth", help="write synthetic microscopy data with ground truth")
    sub = p.add_subparsers(dest="synth_command", metavar="{demo,train}", required=True)

    d = sub.add_parser("demo", help="a synthetic plate run (CellProfiler naming) + ground truth")
    d.add_argument("--out", required=True, help="output folder")
    d.add_argument("--plate", default="DEMO", help="plate name (default: %(default)s)")
    d.add_argument("--rows", default="ABC", help="row letters, e.g. ABC (default: %(default)s)")
    d.add_argument("--columns", type=int, nargs="+", default=[1, 2, 3, 4], help="column numbers")
    d.add_argument("--fields", type=int, default=2, help="fields per well (default: %(default)s)")
    d.add_argument("--size", type=int, default=512, help="field size in pixels (default: %(default)s)")
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=_synth_demo)

    t = sub.add_parser("train", help="annotated training images (dsb2018 layout)")
    t.add_argument("--out", required=True, help="output folder")
    t.add_argument("--n", type=int, default=16, help="number of images (default: %(default)s)")
    t.add_argument("--size", type=int, default=256, help="image size in pixels (default: %(default)s)")
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=_synth_train)


# ---- check-names ---------------------------------------------------------------------------------


def _check_names(args: argparse.Namespace) -> int:
    from plateseg.io.manifest import build_manifest

    manifest, unmatched = build_manifest(args.dir, args.scheme, pattern=args.pattern, sample_sheet=args.sample_sheet,
                                         plate=args.plate)
    cols = [c for c in ("plate", "well", "field", "channel", "plane", "timepoint") if c in manifest.columns]
    print("\t".join(["file", *cols]))
    for r in manifest.sort_values(["plate", "well", "field", "channel"]).itertuples():
        print("\t".join([str(r.path), *(str(getattr(r, c)) for c in cols)]))
    for name in unmatched:
        print(f"{name}\tNO MATCH")
    wells = manifest.groupby("plate")["well"].nunique().to_dict() if len(manifest) else {}
    log.info("%d file(s) match the %s scheme (%s), %d do not%s", len(manifest), args.scheme,
             ", ".join(f"plate {p}: {n} well(s)" for p, n in wells.items()) or "no plate", len(unmatched),
             f", e.g. {unmatched[:3]}" if unmatched else "")
    return 0 if len(manifest) and not unmatched else 1


def _add_check_names(subparsers) -> None:
    from plateseg.io.naming import EXPECTED_NAMES, SCHEMES

    p = subparsers.add_parser(
        "check-names", help="which files of a folder match a naming scheme, and what each one is",
        description="List every image file of DIR with the plate, well, field and channel its name gives under "
                    "--scheme, then the files that match nothing (exit code 1 if any, or if none matches). "
                    "Schemes: " + "; ".join(f"{k}: {v}" for k, v in EXPECTED_NAMES.items()))
    p.add_argument("dir", help="the folder of the run's images (config input.dir)")
    p.add_argument("--scheme", required=True, choices=SCHEMES, help="file naming scheme (config input.scheme)")
    p.add_argument("--pattern", help="regex with named groups, for --scheme regex (config input.pattern)")
    p.add_argument("--sample-sheet", help="CSV sample sheet, for --scheme samplesheet (config input.sample_sheet)")
    p.add_argument("--plate", help="plate name where the names have none (config input.plate)")
    p.set_defaults(func=_check_names)


# ---- segment ------------------------------------------------------------------------------------


def _segment(args: argparse.Namespace) -> int:
    import numpy as np
    import tifffile

    from plateseg.pipeline.single import default_config, segment_image

    image = tifffile.imread(args.image)
    if image.ndim == 3 and image.shape[-1] in (3, 4) and image.shape[0] > 4:  # interleaved RGB(A): channels last
        image = np.moveaxis(image, -1, 0)
    if image.ndim not in (2, 3):
        raise SystemExit(f"{args.image}: expected a 2-D image or (channels, y, x), got shape {image.shape}")
    rescale = args.rescale if args.rescale in ("auto", "none") else float(args.rescale)
    models = {k: getattr(args, k) for k in ("unet", "maskrcnn", "picker") if getattr(args, k)}
    config = default_config(args.method, model_set=args.set, models=models, rescale=rescale)
    labels, picks = segment_image(image, config, nuclear=args.channel - 1, threads=args.threads)
    tifffile.imwrite(args.output, labels.astype(np.uint32), compression="zlib")
    log.info("%s: %d nuclei (%s) written to %s", args.image, int(labels.max()), args.method, args.output)
    if picks is not None and args.picks:
        picks.to_csv(args.picks, index=False)
    return 0


def _add_segment(subparsers) -> None:
    p = subparsers.add_parser(
        "segment", help="segment the nuclei of one image with the shipped (or given) models",
        description="Segment one TIFF image (2-D, or channels x y x x) as a one-field well of a run with the "
                    "embedded config: the same scale estimate, engines, watershed and picker. Writes a uint32 "
                    "label TIFF (0 = background).")
    p.add_argument("image", help="input TIFF")
    p.add_argument("-o", "--output", required=True, help="output label TIFF")
    p.add_argument("--method", default="ensemble", choices=["ensemble", "unet", "maskrcnn", "classical"],
                   help="segmentation.method (default: %(default)s)")
    p.add_argument("--set", default="dsb2018-fluo", help="model set: a shipped name or a folder (default: %(default)s)")
    p.add_argument("--unet", help="U-Net checkpoint instead of the set's")
    p.add_argument("--maskrcnn", help="Mask R-CNN checkpoint instead of the set's")
    p.add_argument("--picker", help="picker (picker.json) instead of the set's")
    p.add_argument("--channel", type=int, default=1, help="the nuclear channel, 1-based (default: %(default)s)")
    p.add_argument("--rescale", default="auto", help="auto, none or a zoom factor (segmentation.rescale)")
    p.add_argument("--picks", help="CSV of the ensemble's picks (engine, predicted IoU per label)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.set_defaults(func=_segment)


# ---- evaluate -----------------------------------------------------------------------------------


def _evaluate(args: argparse.Namespace) -> int:
    import tifffile

    from plateseg.evaluation.metrics import evaluate_pair

    scores = evaluate_pair(tifffile.imread(args.groundtruth), tifffile.imread(args.labels))
    for key, value in scores.items():
        print(f"{key}\t{value:.4f}" if isinstance(value, float) else f"{key}\t{value}")
    return 0


def _add_evaluate(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help="score a label image against ground truth (DSB mAP, AP50, F1, Dice, ...)",
        description="Score LABELS against GROUNDTRUTH (label TIFFs of the same shape) with the metrics of the "
                    "workflow's evaluation (DESIGN.md section 5); one metric per line, tab-separated.")
    p.add_argument("labels", help="predicted label TIFF")
    p.add_argument("groundtruth", help="ground-truth label TIFF")
    p.set_defaults(func=_evaluate)


# ---- qc -----------------------------------------------------------------------------------------


def _qc(args: argparse.Namespace) -> int:
    from plateseg.pipeline.qc import well_qc

    report = well_qc(args.results, args.plate, args.well, args.figure)
    print(report.round(3).to_csv(sep="\t", index=False), end="", flush=True)
    return 0


def _add_qc(subparsers) -> None:
    p = subparsers.add_parser(
        "qc", help="quality of one well of a finished run: per field counts, QC flags, scale, picker",
        description="Print one line per field of a well of a run (nuclei, empty or saturated channels, the "
                    "estimated nucleus diameter and zoom, the ensemble's U-Net share and mean predicted IoU) "
                    "and, with --figure, draw each field with its nuclei outlined by the engine that drew them.")
    p.add_argument("plate", help="plate name (results/<plate>)")
    p.add_argument("well", help="well, e.g. B03")
    p.add_argument("--results", default="results", help="the run's results folder (default: %(default)s)")
    p.add_argument("--figure", help="PNG of the well's fields with the final contours")
    p.set_defaults(func=_qc)


_COMMANDS = [_add_synth, _add_check_names, _add_segment, _add_evaluate, _add_qc]


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every registered command."""
    parser = argparse.ArgumentParser(prog="plateseg", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for add in _COMMANDS:
        add(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``plateseg`` command line; returns the exit code."""
    args = build_parser().parse_args(argv)
    level = logging.WARNING if args.quiet else (logging.DEBUG if args.verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("plateseg").setLevel(level)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
