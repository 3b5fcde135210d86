"""Crash-safe writing of outputs and small I/O helpers.

Every file or folder a rule produces is first written under a temporary name beside its final
path and then moved into place with :func:`os.replace`, so a job that is killed half-way leaves
nothing that looks complete.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
from pathlib import Path

import pandas as pd

__all__ = ["atomic_path", "remove_path", "write_table", "read_table", "setup_logging", "rate_text"]

log = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_path(final):
    """Yield a temporary path beside ``final``; move it to ``final`` only if the block succeeds.

    Works for files and folders (e.g. a zarr store). An existing ``final`` is replaced, and temporary
    copies that a killed job left beside it (``.<name>.partial-<pid>``) are removed.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_path(d / "x.txt") as tmp:
    ...     _ = tmp.write_text("done")
    >>> (d / "x.txt").read_text()
    'done'
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.partial-{os.getpid()}"
    for stale in final.parent.glob(f".{final.name}.partial-*"):
        if stale != tmp:  # left by a killed job: one job at a time writes an output (Snakemake's lock)
            log.info("removing %s, left by a job that did not finish", stale)
        remove_path(stale)
    try:
        yield tmp
        remove_path(final)
        os.replace(tmp, final)
    finally:
        remove_path(tmp)


def remove_path(path) -> None:
    """Remove a file, link or folder tree if it exists."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def write_table(df: pd.DataFrame, path) -> None:
    """Write ``df`` atomically as parquet or CSV, chosen by the file ending of ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        elif path.suffix == ".csv":
            df.to_csv(tmp, index=False)
        else:
            raise ValueError(f"{path}: expected a .parquet or .csv table path")


def read_table(path) -> pd.DataFrame:
    """Read a table written by :func:`write_table`."""
    path = Path(path)
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path)


def rate_text(pixels: int, seconds: float) -> str:
    """A step's throughput for its log: megapixels, wall time and megapixels per second.

    Examples
    --------
    >>> rate_text(2_000_000, 4.0)
    '2.00 MP in 4.0 s: 0.50 MP/s'
    """
    return f"{pixels / 1e6:.2f} MP in {seconds:.1f} s: {pixels / 1e6 / max(seconds, 1e-9):.2f} MP/s"


def setup_logging(log_path=None, level=logging.INFO) -> logging.Logger:
    """Send ``plateseg`` log records (progress, warnings) to ``log_path`` and to stderr; an exception that
    ends the process is written there too, with its traceback."""
    root = logging.getLogger("plateseg")
    root.setLevel(level)
    for h in list(root.handlers):
        root.removeHandler(h)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers = [logging.StreamHandler()]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    for h in handlers:
        h.setFormatter(fmt)
        root.addHandler(h)
    root.propagate = False
    _log_uncaught(root)
    return root


def _log_uncaught(root: logging.Logger) -> None:
    """Write an exception that ends the process, with its traceback, to ``root``'s handlers (the rule's log
    file), then let Python report it as usual (Snakemake's output still shows it)."""
    previous = sys.excepthook

    def hook(kind, value, tb):
        if not issubclass(kind, KeyboardInterrupt):
            record = root.makeRecord(root.name, logging.ERROR, "", 0, "failed: %s: %s", (kind.__name__, value),
                                     (kind, value, tb))
            for handler in root.handlers:
                if isinstance(handler, logging.FileHandler):  # stderr gets Python's own report below
                    handler.handle(record)
        previous(kind, value, tb)

    if getattr(previous, "plateseg_hook", False):  # set up twice in one process: keep one hook
        previous = previous.plateseg_previous
    hook.plateseg_hook, hook.plateseg_previous = True, previous
    sys.excepthook = hook
