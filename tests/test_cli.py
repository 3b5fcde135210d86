"""The plateseg command line: check-names and evaluate on hand-made files (segment and qc run on a real
workflow's output in tests/workflow/test_shipped_models.py)."""
from __future__ import annotations

import numpy as np
import pytest
import tifffile

from plateseg.cli import main
from plateseg.evaluation.metrics import evaluate_pair


def test_check_names_lists_what_each_file_is_and_what_matches_nothing(tmp_path, capsys):
    for name in ("P1_B03_s2_w1.tif", "P1_B03_s2_w2.tif", "P1_C10_s12_w1.tif", "notes.tif"):
        tifffile.imwrite(tmp_path / name, np.zeros((4, 4), np.uint16))
    assert main(["check-names", str(tmp_path), "--scheme", "cellprofiler"]) == 1  # one file matches nothing
    lines = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert lines[0] == ["file", "plate", "well", "field", "channel"]
    rows = {row[0].rsplit("/", 1)[-1]: row[1:] for row in lines[1:]}
    assert rows["P1_B03_s2_w2.tif"] == ["P1", "B03", "2", "2"] and rows["P1_C10_s12_w1.tif"] == ["P1", "C10", "12", "1"]
    assert rows["notes.tif"] == ["NO MATCH"]
    (tmp_path / "notes.tif").unlink()
    assert main(["check-names", str(tmp_path), "--scheme", "cellprofiler"]) == 0


def test_evaluate_prints_the_workflow_metrics(tmp_path, capsys):
    gt = np.zeros((32, 32), np.uint16)
    gt[2:10, 2:10], gt[15:25, 15:25] = 1, 2
    pred = np.zeros_like(gt)
    pred[3:10, 2:10] = 7
    tifffile.imwrite(tmp_path / "gt.tif", gt)
    tifffile.imwrite(tmp_path / "pred.tif", pred)
    assert main(["evaluate", str(tmp_path / "pred.tif"), str(tmp_path / "gt.tif")]) == 0
    out = dict(line.split("\t") for line in capsys.readouterr().out.splitlines())
    expected = evaluate_pair(gt, pred)
    assert int(out["n_true"]) == 2 and int(out["n_pred"]) == 1 and int(out["tp_50"]) == 1
    assert float(out["dsb_map"]) == pytest.approx(expected["dsb_map"], abs=1e-4) and 0 < float(out["dsb_map"]) < 1


@pytest.mark.parametrize("command", ["check-names", "segment", "evaluate", "qc", "synth"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0 and "usage: plateseg " + command in capsys.readouterr().out
