"""What the DSB2018 benchmarks (``bench/*_dsb.py``) share: options, data split, chunked training within a
wall-time budget, report tables and sections, and the settings built from the workflow's config.

The benchmark scripts import only the library; this module is their common part. Settings come from
:func:`workflow_config` and :mod:`plateseg.config.params` (the functions the workflow uses), so a
benchmark and the workflow start from the same defaults. torch is imported only by the functions that
train (:func:`train_in_chunks`).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shlex
import sys
import time
from pathlib import Path

__all__ = [
    "common_args",
    "bench_logging",
    "BenchRun",
    "start_run",
    "evaluate_methods",
    "workflow_config",
    "dsb_split",
    "object_scores",
    "train_in_chunks",
    "chunk_text",
    "COLUMNS",
    "table_markdown",
    "write_section",
    "command_text",
    "relative_path",
    "unseen_items",
    "annotated_subset",
]

log = logging.getLogger(__name__)


def common_args(ap: argparse.ArgumentParser, name: str, repo) -> argparse.ArgumentParser:
    """Add the options every DSB2018 benchmark shares: data, split, seed, threads, output folder, results file.

    Parameters
    ----------
    ap : argparse.ArgumentParser
    name : str
        The benchmark's name (default output folder ``<repo>/bench/out/<name>``).
    repo : path-like
        The repository root.

    Examples
    --------
    >>> args = common_args(argparse.ArgumentParser(), "x", "/repo").parse_args(["--fold", "2"])
    >>> args.fold, args.k, Path(args.out).as_posix()
    (2, 5, '/repo/bench/out/x')
    """
    repo = Path(repo)
    default_data = os.environ.get("PLATESEG_DSB2018") or str(repo / ".." / "shared" / "data" / "dsb2018" / "fluo")
    ap.add_argument("--data", default=default_data,
                    help="annotated folder (default: $PLATESEG_DSB2018 or ../shared/data/dsb2018/fluo "
                         "relative to the repo root)")
    ap.add_argument("--fold", type=int, default=0, help="held-out fold")
    ap.add_argument("--k", type=int, default=5, help="number of grouped folds")
    ap.add_argument("--val-groups-k", type=int, default=8,
                    help="the validation split is one of this many grouped folds of the training folds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--config", default=str(repo / "config" / "demo-train.yaml"),
                    help="workflow config whose settings (with the schema's defaults) the benchmark starts from "
                         "(default: the training demo's, which the DSB2018 benchmarks ran with)")
    ap.add_argument("--out", default=str(repo / "bench" / "out" / name))
    ap.add_argument("--results", default=str(repo / "bench" / "RESULTS.md"))
    return ap


def bench_logging(out, libraries=()) -> logging.Logger:
    """The ``bench`` logger (and the ``libraries``' loggers) to stdout and ``out/run.log`` (``out`` is created).

    Examples
    --------
    >>> import tempfile
    >>> bench_logging(Path(tempfile.mkdtemp()) / "run").name
    'bench'
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger("bench")
    logger.setLevel(logging.INFO)
    fmt = logging.Formatter("%(asctime)s %(name)s %(message)s", "%H:%M:%S")
    for h in (logging.StreamHandler(sys.stdout), logging.FileHandler(out / "run.log", mode="w")):
        h.setFormatter(fmt)
        logger.addHandler(h)
        for name in libraries:
            logging.getLogger(name).addHandler(h)
    for name in libraries:
        logging.getLogger(name).setLevel(logging.INFO)
    return logger


class BenchRun:
    """A started benchmark run: its output folder, logger, start time and :func:`plateseg.machine.machine_info`.

    Examples
    --------
    >>> import tempfile
    >>> run = BenchRun(Path(tempfile.mkdtemp()), logging.getLogger("bench"), {"load_1min": 0.0})
    >>> run.minutes() < 1
    True
    """

    def __init__(self, out: Path, log: logging.Logger, machine: dict):
        self.out, self.log, self.machine = out, log, machine
        self.t0 = time.perf_counter()

    def minutes(self) -> float:
        """Wall time since the start, in minutes."""
        return (time.perf_counter() - self.t0) / 60

    def machine_text(self) -> str:
        """The machine at the start and now (:func:`plateseg.machine.machine_text`)."""
        from plateseg.machine import machine_info, machine_text

        return machine_text(self.machine, machine_info())


def start_run(args, libraries=()) -> BenchRun:
    """Start a benchmark: logging to ``args.out`` (:func:`bench_logging`), torch with ``args.threads``
    CPU threads, and the machine's state (:func:`plateseg.machine.machine_info`).

    Examples
    --------
    run = start_run(argparse.Namespace(out="bench/out/x", threads=2))
    """
    import torch

    from plateseg.machine import machine_info

    torch.set_num_threads(int(args.threads))
    return BenchRun(Path(args.out), bench_logging(args.out, libraries), machine_info())


def evaluate_methods(methods: dict, truths, names, out, log) -> list:
    """Score every method on the held-out images and write its ``per_image_<name>.csv`` to ``out``.

    Parameters
    ----------
    methods : dict
        method name -> ``(predicted label images, per-image scores or None)``, in image order.
    truths : list
        True label images.
    names : list of str
        Image ids.
    out : path-like
        Output folder (the file is named by the first word of the method name).
    log : logging.Logger

    Returns
    -------
    list of dict
        ``method`` and the :func:`plateseg.evaluation.metrics.evaluate_dataset` summary (tie "gt").

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> gt = np.zeros((8, 8), int); gt[1:5, 1:5] = 1
    >>> rows = evaluate_methods({"same": ([gt], None)}, [gt], ["a"], tempfile.mkdtemp(), log)
    >>> rows[0]["method"], rows[0]["mean_dsb_map"]
    ('same', 1.0)
    """
    from plateseg.evaluation.metrics import evaluate_dataset

    rows = []
    for name, (preds, scores) in methods.items():
        per_image, summary = evaluate_dataset(truths, preds, scores=scores, names=names, tie="gt")
        per_image.to_csv(Path(out) / f"per_image_{name.split()[0]}.csv", index=False)
        rows.append({"method": name, **summary})
        log.info("%s: mAP %.4f F1@0.5 %.4f AP50 %.4f COCO AP %.4f", name, summary["mean_dsb_map"],
                 summary["pooled_f1_50"], summary["coco_AP50"], summary["coco_AP"])
    return rows


def workflow_config(path, schema=None) -> dict:
    """The workflow's config file with the defaults of its schema filled in (as Snakemake validates it).

    Parameters
    ----------
    path : path-like
        ``config.yaml``.
    schema : path-like, optional
        Default ``workflow/schemas/config.schema.yaml`` of the nearest folder above ``path`` that has one.

    Returns
    -------
    dict
        The config, ready for :mod:`plateseg.config.params` (e.g. ``unet_settings(config, "all")``).

    Examples
    --------
    >>> from plateseg.config.params import unet_settings
    >>> cfg = workflow_config("config.yaml")
    >>> sorted(unet_settings(cfg, "all"))[:3]
    ['background', 'batch_size', 'blur_sigma']
    """
    import yaml
    from snakemake.utils import validate

    path = Path(path)
    if schema is None:  # the schema of the repository holding the config file
        rel = Path("workflow", "schemas", "config.schema.yaml")
        schema = next((d / rel for d in path.resolve().parents if (d / rel).is_file()), path.parent / rel)
    config = yaml.safe_load(path.read_text()) or {}
    validate(config, str(schema), set_default=True)
    return config


def dsb_split(data, fold: int = 0, k: int = 5, val_groups_k: int = 8, seed: int = 0, groups: bool = False):
    """The benchmarks' split of an annotated folder: ``(items, test, val, train)`` (and, with
    ``groups``, a fifth element: image id -> image group of :func:`plateseg.io.annotated.grouped_folds`).

    ``test`` is held-out grouped fold ``fold`` of ``grouped_folds(k, seed=0)``; ``val`` is
    grouped fold 0 of ``val_groups_k`` of the remaining images (``seed + 1``), used only to tune
    thresholds (and, for the ensemble, to train the picker: the engines never train on it);
    ``train`` is the rest. Each list holds ``(id, image, mask)`` items of ``load_annotated``.
    Shared by every DSB2018 benchmark so that they train and test on the same images.

    Examples
    --------
    items, test, val, train = dsb_split("data/dsb2018/fluo", fold=0)
    """
    import pandas as pd
    from plateseg.io.annotated import grouped_folds, load_annotated

    items, index = load_annotated(data, channels="gray")
    folds = grouped_folds(index, k=k, seed=0)
    fold_of = dict(zip(folds["id"], folds["fold"]))
    group_of = dict(zip(folds["id"], folds["group"]))
    test = [it for it in items if fold_of[it[0]] == fold]
    rest = [it for it in items if fold_of[it[0]] != fold]
    rest_idx = pd.DataFrame({"id": [it[0] for it in rest], "group": [group_of[it[0]] for it in rest]})
    sub = grouped_folds(rest_idx, k=val_groups_k, seed=seed + 1)
    val_ids = set(sub.loc[sub["fold"] == 0, "id"])
    val = [it for it in rest if it[0] in val_ids]
    train = [it for it in rest if it[0] not in val_ids]
    return (items, test, val, train, group_of) if groups else (items, test, val, train)


def object_scores(labels, fg_prob):
    """Mean foreground probability of each object (COCO AP ranking score).

    Examples
    --------
    >>> import numpy as np
    >>> object_scores(np.array([[1, 1, 0, 2]]), np.array([[0.5, 1.0, 0.0, 0.2]]))
    {1: 0.75, 2: 0.2}
    """
    import numpy as np

    lab = labels.astype(np.int64).ravel()
    n = int(lab.max())
    if n == 0:
        return {}
    s = np.bincount(lab, weights=fg_prob.ravel().astype(np.float64), minlength=n + 1)
    c = np.bincount(lab, minlength=n + 1)
    return {i: float(s[i] / c[i]) for i in range(1, n + 1) if c[i]}


def train_in_chunks(train_fn, params_cls, images, masks, base: dict, args, log, train_log=None,
                    fill: float = 0.92, state=None, build=None):
    """Train one model (``train_fn``: ``train_unet`` or ``train_maskrcnn``) in chunks of epochs that
    together fit in the wall-time budget ``args.budget_minutes``.

    The engines' training has no wall-time limit and the machine's speed varies with other jobs
    (measured 0.66 to 9.5 s per 128-px step of batch 8 within minutes), so a single plan from a
    warm-up is fragile. Instead training runs in chunks, each a ``train_fn`` call with its own
    warm-up + cosine schedule (warm restarts, as SGDR) starting from the previous chunk's weights
    (``initial_weights``): chunk 1 is short (``args.first_chunk_steps``) and measures the speed;
    each next chunk is sized from the last measured steady-state seconds per step to fill the
    remaining budget (x ``fill``). Each chunk ends at a low learning rate, so stopping after any
    chunk leaves a usable model. Guard: within a chunk, training stops at an epoch boundary
    (``on_epoch_end`` returns True) when the next epoch would overrun the budget; a chunk after the
    first cut before 75% of its epochs is discarded (its learning rate is still high) and the
    previous chunk's final weights are kept. Chunk ``i`` uses seed ``seed + 1000 * i`` so that its
    crops differ from earlier chunks'; peak learning rate halves from chunk 3.

    Parameters
    ----------
    train_fn : callable
        The engine's training function (``images, masks, params, log, on_epoch_end, initial_weights``).
    params_cls : type
        Its settings class (``coerce``).
    images, masks : list
        Training data.
    base : dict
        Settings of every chunk (epochs, steps, warm-up, lr and seed are set per chunk).
    args : argparse.Namespace
        ``budget_minutes``, ``first_chunk_steps``, ``min_chunk_steps``, ``epoch_steps``, ``batch``,
        ``lr``, ``warmup_steps``, ``seed``.
    log : logging.Logger
    train_log : logging.Logger, optional
        Given to ``train_fn`` (default ``log``).
    fill : float
        Share of the remaining budget a later chunk plans to use.
    state : path-like, optional
        Resume file: written (atomically) after every chunk with the weights, history, chunks and the
        budget used so far; when it exists at the start, training goes on from there (a killed run
        loses at most one chunk). Needs ``build``.
    build : callable, optional
        ``build(params) -> model`` of the engine (an untrained model the resumed weights are loaded into).

    Returns
    -------
    tuple
        ``(model, params, history, info)``: the params of the last chunk, every epoch's record
        (with its ``chunk``) and a summary (chunks, steps, seconds, whether the guard stopped).

    Examples
    --------
    from plateseg.engines.unet import UNetParams, train_unet
    model, params, history, info = train_in_chunks(train_unet, UNetParams, images, masks,
                                                       {"crop_size": 128}, args, log)
    """
    import torch

    from plateseg.io.files import atomic_path

    budget = args.budget_minutes * 60.0
    t_start = time.perf_counter()
    weights = model = params = None
    history, chunks = [], []
    sec_per_step, stopped, chunk = None, False, 0
    if state is not None and Path(state).is_file():
        saved = torch.load(state, map_location="cpu", weights_only=False)
        weights, history, chunks = saved["weights"], saved["history"], saved["chunks"]
        sec_per_step, stopped, chunk = saved["sec_per_step"], saved["stopped"], len(chunks)
        t_start -= saved["elapsed"]
        params = params_cls.coerce(saved["params"])
        model = build(params)
        model.load_state_dict(weights)
        model.eval()
        log.info("resumed from %s: %d chunks, %.0f s of the budget used", state, chunk, saved["elapsed"])
    while not stopped:
        remaining = budget - (time.perf_counter() - t_start)
        steps = args.first_chunk_steps if chunk == 0 else int((remaining - 15.0) * fill / sec_per_step)
        epochs = steps // args.epoch_steps
        if epochs < 2 or (chunk > 0 and epochs * args.epoch_steps < args.min_chunk_steps):
            break
        lr = args.lr if chunk < 2 else args.lr * 0.5
        params = params_cls.coerce({
            **base, "epochs": epochs, "samples_per_epoch": args.epoch_steps * args.batch,
            "warmup_steps": args.warmup_steps if chunk == 0 else args.warmup_steps // 2,
            "lr": lr, "seed": args.seed + 1000 * chunk})
        log.info("chunk %d: %.0f s of budget left, %s s/step -> %d epochs x %d steps, peak lr %g",
                 chunk + 1, remaining, "?" if sec_per_step is None else f"{sec_per_step:.2f}",
                 epochs, args.epoch_steps, lr)
        recs = []
        t_chunk = time.perf_counter()

        def guard(rec, recs=recs, epochs=epochs):
            recs.append(rec)
            elapsed = time.perf_counter() - t_start
            if rec["epoch"] < epochs and elapsed + rec["seconds"] > budget:
                log.warning("budget guard: %.0f s elapsed, next epoch (~%.0f s) would overrun %.0f s; "
                            "stopping after epoch %d of %d", elapsed, rec["seconds"], budget,
                            rec["epoch"], epochs)
                return True
            return False

        new, _ = train_fn(images, masks, params, log=train_log or log, on_epoch_end=guard,
                          initial_weights=weights)
        stopped = len(recs) < epochs
        if stopped and weights is not None and len(recs) < 0.75 * epochs:
            log.warning("chunk %d cut short: keeping the weights of the end of chunk %d", chunk + 1, chunk)
        else:
            model = new
        history += [{"chunk": chunk + 1, **r} for r in recs]
        # steady state: leave out the chunk's first epoch (one-off costs) when possible
        steady = recs[1:] if len(recs) > 1 else recs
        sec_per_step = sum(r["seconds"] for r in steady) / sum(r["steps"] for r in steady)
        chunks.append({"chunk": chunk + 1, "epochs_planned": epochs, "epochs_done": len(recs),
                       "steps": sum(r["steps"] for r in recs), "lr": lr,
                       "seconds": time.perf_counter() - t_chunk, "sec_per_step": sec_per_step})
        weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        chunk += 1
        if state is not None:
            with atomic_path(state) as tmp:
                torch.save({"weights": weights, "history": history, "chunks": chunks, "sec_per_step": sec_per_step,
                            "stopped": stopped, "elapsed": time.perf_counter() - t_start,
                            "params": dataclasses.asdict(params)}, tmp)
    info = {"chunks": chunks, "epoch_steps": args.epoch_steps, "done_epochs": len(history),
            "done_steps": sum(r["steps"] for r in history), "train_seconds": time.perf_counter() - t_start,
            "stopped_by_guard": stopped, "final_loss": history[-1]["loss"] if history else float("nan")}
    return model, params, history, info


COLUMNS = [
    ("DSB mAP", "mean_dsb_map"), ("COCO AP", "coco_AP"), ("AP50", "coco_AP50"),
    ("AP75", "coco_AP75"), ("F1@0.5", "pooled_f1_50"), ("P@0.7", "pooled_precision_70"),
    ("R@0.7", "pooled_recall_70"), ("Dice", "mean_dice"), ("over", "total_over"),
    ("under", "total_under"), ("n pred", "total_n_pred"),
]


def table_markdown(rows, columns=COLUMNS) -> str:
    """A markdown table, one row per ``method`` of ``rows`` (dicts); ``columns`` are (header, key)
    pairs; ``total_*`` keys print as integers, the rest with 3 decimals.

    Examples
    --------
    >>> print(table_markdown([{"method": "unet", "mean_dsb_map": 0.5, "total_n_pred": 7.0}],
    ...                      [("DSB mAP", "mean_dsb_map"), ("n pred", "total_n_pred")]))
    | method | DSB mAP | n pred |
    |---|---:|---:|
    | unet | 0.500 | 7 |
    """
    lines = ["| method | " + " | ".join(c for c, _ in columns) + " |", "|---|" + "---:|" * len(columns)]
    for r in rows:
        cells = [f"{int(r[k])}" if k.startswith("total_") else f"{float(r[k]):.3f}" for _, k in columns]
        lines.append(f"| {r['method']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_section(path, text: str, section: str) -> None:
    r"""Replace (or append) ``section`` (a ``## `` heading line) of the markdown file ``path`` with ``text``,
    keeping every other section; written atomically.

    Examples
    --------
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "R.md"
    >>> write_section(p, "## A\none\n", "## A"); write_section(p, "## A\ntwo\n", "## A")
    >>> p.read_text()
    '# plateseg benchmarks\n\n## A\ntwo\n'
    """
    path = Path(path)
    old = path.read_text() if path.exists() else "# plateseg benchmarks\n"
    lines = old.splitlines(keepends=True)
    start = next((i for i, l in enumerate(lines) if l.strip() == section), None)
    if start is None:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = next((j for j in range(start + 1, len(lines)) if lines[j].startswith("## ")), len(lines))
        new = "".join(lines[:start]) + text.rstrip("\n") + "\n" + (
            "\n" + "".join(lines[end:]) if end < len(lines) else "")
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(new)
    os.replace(tmp, path)


def chunk_text(chunks, epoch_steps: int | None = None) -> str:
    """The chunks of :func:`train_in_chunks` (``info["chunks"]``) as one line of a report.

    Examples
    --------
    >>> chunk_text([{"chunk": 1, "steps": 10, "epochs_done": 2, "epochs_planned": 2, "lr": 0.001,
    ...              "seconds": 12.0, "sec_per_step": 1.2}], 5)
    'chunk 1: 10 steps (2/2 epochs of 5), lr 0.001, 12 s, 1.20 s/step'
    """
    of = f" of {epoch_steps}" if epoch_steps else ""
    return "; ".join(f"chunk {c['chunk']}: {c['steps']} steps ({c['epochs_done']}/{c['epochs_planned']} "
                     f"epochs{of}), lr {c['lr']:g}, {c['seconds']:.0f} s, {c['sec_per_step']:.2f} s/step"
                     for c in chunks)


def command_text(script: str, argv=None) -> str:
    """The command line that ran a benchmark, for its report (``argv`` default ``sys.argv[1:]``).

    Examples
    --------
    >>> command_text("bench/unet_dsb.py", ["--quick", "--out", "a b"])
    ".venv/bin/python bench/unet_dsb.py --quick --out 'a b'"
    """
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join([".venv/bin/python", script, *(shlex.quote(a) for a in args)])


def relative_path(path, root) -> str:
    """``path`` relative to ``root`` when it can be, else as given.

    Examples
    --------
    >>> relative_path("/repo/bench/out/x", "/repo")
    'bench/out/x'
    """
    try:
        return os.path.relpath(path, root)
    except ValueError:
        return str(path)


def unseen_items(folder, modality: str, meta: dict) -> list:
    """``(id, image, mask)`` of the ``modality`` images (``index.csv`` column) of an annotated ``folder``, read as
    gray, that the model set of checkpoint ``meta`` never saw: a folder with the set's training data hash is refused.

    Raises
    ------
    SystemExit
        The folder is the set's training data, or has no image of ``modality`` (the message lists those it has).
    """
    import pandas as pd

    from plateseg.io.annotated import data_hash, load_annotated

    folder = Path(folder)
    if data_hash(folder) == meta.get("data_hash"):
        raise SystemExit(f"{folder} is the set's training data (data hash {meta['data_hash']}), not a new microscope")
    index = pd.read_csv(folder / "index.csv")
    ids = index.loc[index["modality"] == modality, "id"].astype(str).tolist()
    if not ids:
        raise SystemExit(f"no images of modality {modality!r} in {folder / 'index.csv'} "
                         f"(it has {sorted(index['modality'].unique())})")
    return load_annotated(folder, channels="gray", ids=ids)[0]


def annotated_subset(data, ids, out) -> Path:
    """Copy the images and masks of ``ids`` (and their ``index.csv`` rows) of the annotated folder ``data`` into
    ``out``, as a user's annotated folder (the files as they are, not re-encoded; files already there are kept).

    Examples
    --------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> for sub in ("images", "masks"): (root / "d" / sub).mkdir(parents=True)
    >>> for i in ("a", "b"):
    ...     _ = (root / "d" / "images" / f"{i}.png").write_bytes(b"x"); _ = (root / "d" / "masks" / f"{i}.tif").write_bytes(b"y")
    >>> _ = (root / "d" / "index.csv").write_text(chr(10).join(["id,height", "a,1", "b,2"]))
    >>> out = annotated_subset(root / "d", ["b"], root / "sub")
    >>> sorted(p.name for p in out.rglob("*.*")), (out / "index.csv").read_text().split()
    (['b.png', 'b.tif', 'index.csv'], ['id,height', 'b,2'])
    """
    import shutil

    import pandas as pd

    data, out, ids = Path(data), Path(out), {str(i) for i in ids}
    for sub in ("images", "masks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
        for f in (data / sub).iterdir():
            if f.stem in ids and not (out / sub / f.name).exists():
                shutil.copy2(f, out / sub / f.name)
    index = pd.read_csv(data / "index.csv", dtype={"id": str})
    index[index["id"].isin(ids)].to_csv(out / "index.csv", index=False)
    return out
