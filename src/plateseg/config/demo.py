"""The synthetic demo plate (config ``demo.*``): its files known from the config alone, and writing them.

The workflow writes the demo with a rule (``demo_plate``) whose outputs the ingest rules take as input, so
loading the workflow (``snakemake --dry-run``, ``--lint``) writes nothing: :func:`demo_manifest` gives the
manifest of the demo's images before they exist, as :func:`plateseg.io.manifest.build_manifest` would give
it from the written folder.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

__all__ = ["DEMO_CHANNELS", "demo_files", "demo_groundtruth_files", "demo_image_files", "demo_manifest", "ensure_demo",
           "write_demo"]

log = logging.getLogger(__name__)

# channel ids of the demo images (plateseg.io.synth.write_demo_run: 1 DNA, 2 marker, 3 cytoplasm with demo.cells)
DEMO_CHANNELS = ("1", "2")


def _channels(demo: dict) -> tuple[str, ...]:
    return DEMO_CHANNELS + (("3",) if demo.get("cells") else ())


def _wells(demo: dict):
    """(row, column, field, file stem) of every field of the demo, in plate order."""
    for row in str(demo["rows"]).upper():
        for column in demo["columns"]:
            for field in range(1, int(demo["fields"]) + 1):
                yield row, int(column), field, f"{demo['plate']}_{row}{int(column):02d}_s{field}"


def demo_image_files(config: dict) -> list[str]:
    """Paths of the demo's image files (``<input.dir>/<plate>_<well>_s<field>_w<channel>.tif``).

    Examples
    --------
    >>> cfg = {"input": {"dir": "d/images"}, "demo": {"dir": "d", "plate": "P", "rows": "A", "columns": [1], "fields": 1}}
    >>> demo_image_files(cfg)
    ['d/images/P_A01_s1_w1.tif', 'd/images/P_A01_s1_w2.tif']
    """
    demo = config["demo"]
    return [os.path.join(config["input"]["dir"], f"{stem}_w{ch}.tif") for *_, stem in _wells(demo) for ch in _channels(demo)]


def demo_groundtruth_files(config: dict) -> list[str]:
    """Paths of the demo's ground-truth label images (``<demo.dir>/groundtruth/<plate>_<well>_s<field>_labels.tif``,
    and ``..._cells.tif`` with ``demo.cells``)."""
    demo = config["demo"]
    kinds = ("labels", "cells") if demo.get("cells") else ("labels",)
    return [os.path.join(demo["dir"], "groundtruth", f"{stem}_{k}.tif") for *_, stem in _wells(demo) for k in kinds]


def demo_files(config: dict) -> list[str]:
    """Every file the demo plate writes: images, ground-truth labels and the truth table (written last)."""
    truth = os.path.join(config["demo"]["dir"], "groundtruth", "truth.csv")
    return demo_image_files(config) + demo_groundtruth_files(config) + [truth]


def demo_manifest(config: dict):
    """The manifest of the demo's images (columns and order of :func:`plateseg.io.manifest.build_manifest`),
    from the config alone: the files need not exist.

    Examples
    --------
    >>> cfg = {"input": {"dir": "d/images"}, "demo": {"dir": "d", "plate": "P", "rows": "BA", "columns": [2, 1], "fields": 1}}
    >>> list(demo_manifest(cfg)["well"].unique())
    ['A01', 'A02', 'B01', 'B02']
    """
    import pandas as pd

    demo = config["demo"]
    records = [
        dict(plate=str(demo["plate"]), well=f"{row}{column:02d}", row=row, column=column, field=field, channel=ch,
             path=os.path.join(config["input"]["dir"], f"{stem}_w{ch}.tif"))
        for row, column, field, stem in _wells(demo) for ch in _channels(demo)
    ]
    df = pd.DataFrame.from_records(records, columns=["plate", "well", "row", "column", "field", "channel", "path"])
    df["column"] = df["column"].astype("int64")
    df["field"] = df["field"].astype("int64")
    df["_row"] = [(len(r), r) for r in df["row"]]
    df = df.sort_values(["_row", "column", "field", "channel", "path"], kind="stable").drop(columns="_row")
    return df.drop_duplicates(["plate", "well", "field", "channel"]).reset_index(drop=True)


def write_demo(demo: dict):
    """Write the demo plate of config section ``demo`` into ``demo["dir"]`` (returns the truth table)."""
    from plateseg.io.synth import write_demo_run

    log.info("plateseg: writing the synthetic demo plate to %s", demo["dir"])
    return write_demo_run(
        Path(demo["dir"]),
        plate=demo["plate"],
        rows=demo["rows"],
        columns=tuple(demo["columns"]),
        fields=demo["fields"],
        shape=(demo["size"], demo["size"]),
        seed=demo["seed"],
        cells=bool(demo.get("cells")),
    )


def ensure_demo(config: dict) -> None:
    """Write the synthetic demo plate into ``demo.dir`` unless it is already complete there (outside the
    workflow; the workflow writes it with its rule ``demo_plate``).

    The demo writes its truth table last, so its presence marks a complete demo.
    """
    demo = config.get("demo", {})
    if not demo.get("enabled"):
        return
    if (Path(demo["dir"]) / "groundtruth" / "truth.csv").is_file():
        return
    write_demo(demo)
