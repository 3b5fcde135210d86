"""``snakemake --report`` of a finished run (issue 15): every figure and table of the run is in the report."""
from __future__ import annotations

import base64
import re

import pytest

from support import run_snakemake

pytestmark = pytest.mark.workflow


def test_report_holds_every_figure_of_the_run(plate_workdir, tmp_path):
    work = plate_workdir
    res = work / "results"
    figures = [res / "DEMO" / "qc" / "plate_counts.png", res / "qc" / "training_curves.png",
               res / "DEMO" / "qc" / "wells" / "A01.png", res / "DEMO" / "qc" / "wells" / "A02.png",
               res / "models" / "picker" / "importances.png"]
    tables = [res / "DEMO" / "profiles.csv", res / "DEMO" / "plate_summary.csv",
              *(res / "DEMO" / "evaluation" / f"{s}.csv" for s in ("ensemble", "unet", "maskrcnn", "classical"))]
    report = tmp_path / "report.html"
    run_snakemake(work, "--report", str(report))
    html = report.read_text()
    for path in figures + tables:
        assert str(path.relative_to(work)) in html, path
    # the pictures themselves are embedded (base64 data), not only named
    embedded = {base64.b64decode(m) for m in re.findall(r'"data:[a-z/]+;charset=utf8;filename=[^;"]+;base64,([A-Za-z0-9+/=]+)"', html)}
    for path in figures + tables:
        assert path.read_bytes() in embedded, path
    assert "mean predicted IoU" in html  # the plate heat map's caption (QC flags)
