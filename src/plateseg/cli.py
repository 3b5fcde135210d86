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


_COMMANDS = [_add_synth]


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
