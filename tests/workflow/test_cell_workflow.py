"""Cells and cytoplasm (issue 14): a real snakemake run on a tiny synthetic plate with a cytoplasm stain and
ground-truth cells; the classical nuclei seed the cells (no training). One well's three channels are one
OME-TIFF (issue 16, files of several channels)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile
import yaml
import zarr

from support import dry_run_jobs, run_snakemake, tiny_config

pytestmark = pytest.mark.workflow

CELLS = {"segmentation.method": "classical", "evaluation.compare": [], "cells.channel": "3",
         "channels.names": {"1": "DNA", "2": "Marker", "3": "Cyto"},
         # the 256 px fields are larger than a block: segment_classical and segment_cells run block by block (issue 16)
         "tiling.block_size": 128, "tiling.block_halo": 32}


def test_cells_grow_from_the_final_nuclei_and_their_features_join_the_tables(tmp_path):
    import pycytominer
    from pycytominer.cyto_utils import infer_cp_features

    from plateseg.evaluation.metrics import evaluate_pair
    from plateseg.io.ngff import list_fields, read_labels
    from plateseg.io.synth import write_demo_run

    run, work = tmp_path / "run", tmp_path / "work"
    work.mkdir()
    write_demo_run(run, plate="CELL", rows="A", columns=(1, 2), fields=1, shape=(256, 256), seed=5, cells=True)
    # well A02 is one OME-TIFF of its three channels (issue 16), listed in the sample sheet without a channel: its
    # channel axis gives channels 1..3; well A01 keeps one file per channel
    images = run / "images"
    a02 = np.stack([tifffile.imread(images / f"CELL_A02_s1_w{c}.tif") for c in (1, 2, 3)])
    for c in (1, 2, 3):
        (images / f"CELL_A02_s1_w{c}.tif").unlink()
    tifffile.imwrite(images / "CELL_A02_s1.ome.tif", a02, ome=True, metadata={"axes": "CYX"}, tile=(128, 128))
    sheet = pd.DataFrame({"path": [f"images/CELL_A01_s1_w{c}.tif" for c in (1, 2, 3)] + ["images/CELL_A02_s1.ome.tif"],
                          "plate": "CELL", "well": ["A01"] * 3 + ["A02"], "field": 1, "channel": ["1", "2", "3", ""]})
    sheet.to_csv(run / "sheet.csv", index=False)
    tiny_config(work, run, **CELLS, **{"input.scheme": "samplesheet", "input.sample_sheet": "../run/sheet.csv"})
    run_snakemake(work)
    res = work / "results" / "CELL"
    from plateseg.io.ngff import open_field

    np.testing.assert_array_equal(open_field(res / "A02" / "image.zarr", 1)[...], a02)
    assert "3 channels (tifffile axes CYX)" in (work / "logs" / "CELL" / "A02" / "ingest.log").read_text()
    for well in ("A01", "A02"):  # the per-well CSV has the marker columns of each channel, whatever the files
        columns = pd.read_csv(res / "wells" / f"{well}.csv").columns
        assert {f"Nuclei_Intensity_MeanIntensity_{name}" for name in ("DNA", "Marker", "Cyto")} <= set(columns)
    for well in ("A01", "A02"):
        nuclei, cells = read_labels(res / well / "classical.zarr", 1), read_labels(res / well / "cells.zarr", 1)
        cyto = read_labels(res / well / "cytoplasm.zarr", 1)
        # one cell per final nucleus, with its label, holding the whole nucleus; cytoplasm = cell minus nucleus
        assert set(np.unique(cells)) == set(np.unique(nuclei))
        assert (cells[nuclei > 0] == nuclei[nuclei > 0]).all()
        assert np.array_equal(cyto, np.where(nuclei > 0, 0, cells))
        # the cells follow the stain: near the true cells (the seeds are the classical nuclei, not the truth);
        # issue 14 asks for DSB mAP >= 0.6 (0.71 and 0.89 when written)
        truth = tifffile.imread(run / "groundtruth" / f"CELL_{well}_s1_cells.tif")
        blocks = zarr.open_group(str(res / well / "classical.zarr"), mode="r").attrs["plateseg"]["blocks"]["1"]
        assert blocks["blocks"] == 4 and blocks["objects"] == int(nuclei.max()) > 5  # the config's blocks, used
        assert "(4 blocks)" in (work / "logs" / "CELL" / well / "segment_cells.log").read_text()
        # seam QC in both per-well CSVs: the final labels' blocks (4 per field), nuclei kept whole across a seam
        # and larger than the halo, summed over the well's fields
        record = zarr.open_group(str(res / well / "classical.zarr"), mode="r").attrs["plateseg"]["blocks"].values()
        n_fields = len(list_fields(res / well / "image.zarr"))
        for table in (f"{well}.csv", f"{well}_summary.csv"):
            row = pd.read_csv(res / "wells" / table).iloc[0]
            assert row["Metadata_QC_Blocks"] == 4 * n_fields
            assert row["Metadata_QC_NucleiAcrossSeams"] == sum(r["on_seams"] for r in record) > 0
            assert row["Metadata_QC_NucleiLargerThanHalo"] == sum(r["cut_by_halo"] for r in record)
        assert evaluate_pair(truth, cells)["dsb_map"] >= 0.6
        # the HCS plate has them beside the nuclei
        labels = zarr.open_group(str(res / "plate.zarr" / "A" / str(int(well[1:])) / "1" / "labels"), mode="r")
        assert labels.attrs["ome"]["labels"] == ["nuclei", "cells", "cytoplasm"]
    for table in ("plate_summary.csv", "profiles.csv"):  # and in the plate tables, a row per well (1 field each)
        assert pd.read_csv(res / table)["Metadata_QC_Blocks"].tolist() == [4, 4]
    ev = pd.read_csv(res / "evaluation" / "cells.csv")
    assert ev["mean_dsb_map"].iloc[0] >= 0.6 and ev["total_n_true"].iloc[0] > 20

    objects = pd.concat([pd.read_parquet(res / w / "objects.parquet") for w in ("A01", "A02")], ignore_index=True)
    features = infer_cp_features(objects)
    assert {c.split("_")[0] for c in features} == {"Nuclei", "Cells", "Cytoplasm"}
    assert (objects["Cells_Parent_Nuclei"] == objects["Metadata_ObjectNumber"]).all()
    assert (objects["Nuclei_Children_Cells_Count"] == 1).all()
    assert (objects["Cells_AreaShape_Area"] >= objects["Nuclei_AreaShape_Area"]).all()
    assert np.allclose(objects["Cells_AreaShape_Area"] - objects["Nuclei_AreaShape_Area"],
                       objects["Cytoplasm_AreaShape_Area"].fillna(0))
    # cytoplasm stain: brighter in the cytoplasm than in the nucleus (the synthetic stain leaves the nucleus dim)
    assert (objects["Cytoplasm_Intensity_MeanIntensity_Cyto"] > objects["Nuclei_Intensity_MeanIntensity_Cyto"]).mean() > 0.9
    aggregated = pycytominer.aggregate(objects, features="infer", compute_object_count=True)
    profiles = pd.read_csv(res / "profiles.csv")
    np.testing.assert_allclose(profiles[features].to_numpy(float), aggregated[features].to_numpy(float), rtol=1e-9)

    # a cells.* key reruns the cells and what follows them, never the nuclei
    config = yaml.safe_load((work / "config.yaml").read_text())
    config["cells"]["propagation"]["regularization"] = 0.2
    (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    jobs = dry_run_jobs(run_snakemake(work, "--dry-run").stdout)
    assert {rule for rule, _ in jobs} == {"segment_cells", "measure", "hcs_well",
                                          "plate_summary", "plate_qc", "hcs_plate", "evaluate"}, jobs
    assert ("evaluate", "cells") in jobs and ("evaluate", "classical") not in jobs


def test_a_cell_channel_that_is_not_a_channel_names_the_key(tmp_path):
    from plateseg.io.synth import write_demo_run

    run, work = tmp_path / "run", tmp_path / "work"
    work.mkdir()
    write_demo_run(run, plate="CELL", rows="A", columns=(1,), fields=1, shape=(64, 64), seed=5)
    tiny_config(work, run, **{**CELLS, "cells.channel": "4"})
    proc = run_snakemake(work, "--dry-run", check=False)
    assert proc.returncode != 0 and "cells.channel: '4' is not one of the channel ids" in proc.stdout + proc.stderr
