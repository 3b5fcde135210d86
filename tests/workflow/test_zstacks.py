"""Z-stacks through the real workflow (input.z_projection): refused at load without a choice, projected (max or
mean) or reduced to one plane at ingest with it; the well image holds what was asked for."""
from __future__ import annotations

import numpy as np
import pytest
import tifffile
import yaml

from plateseg.io.ngff import open_field
from support import REPO, run_snakemake

pytestmark = pytest.mark.workflow


def zstack_run(tmp_path, z_projection):
    """A CellVoyager-named well B03 with 3 z-planes of one field and channel, and a config for it."""
    run = tmp_path / "run"
    run.mkdir()
    rng = np.random.default_rng(0)
    planes = [rng.integers(0, 4000, (64, 64), dtype=np.uint16) for _ in range(3)]
    for z, plane in enumerate(planes, start=1):
        tifffile.imwrite(run / f"P1_B03_T0001F001L01A01Z0{z}C01.tif", plane)
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["input"].update(dir=str(run), scheme="cellvoyager", z_projection=z_projection)
    config["channels"] = {"names": {"1": "DNA"}, "nuclear": "1"}
    config["segmentation"]["method"] = "classical"
    config["evaluation"] = {"groundtruth": None, "compare": []}
    work = tmp_path / "work"
    work.mkdir()
    (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return work, planes


def test_a_z_stack_without_a_choice_stops_at_load_naming_its_files(tmp_path):
    work, _ = zstack_run(tmp_path, None)
    proc = run_snakemake(work, "--dry-run", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "input.z_projection" in out and "Z01C01" in out and "Z03C01" in out, out


@pytest.mark.parametrize("choice", ["max", 2])
def test_the_chosen_projection_is_what_is_ingested(tmp_path, choice):
    work, planes = zstack_run(tmp_path, choice)
    run_snakemake(work, "results/P1/B03/image.zarr")
    stored = open_field(work / "results" / "P1" / "B03" / "image.zarr", 1)[0]
    expected = np.max(planes, axis=0) if choice == "max" else planes[1]
    np.testing.assert_array_equal(stored, expected)
    log = (work / "logs" / "P1" / "B03" / "ingest.log").read_text()
    assert ("max projection of 3 planes" in log) == (choice == "max"), log
