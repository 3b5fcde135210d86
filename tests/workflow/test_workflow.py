"""Workflow tests: real snakemake runs on a tiny synthetic plate.

They check what a user relies on: outputs and their contents, that an immediate rerun has nothing
to do, that a changed parameter reruns its step and what follows but nothing before it (a watershed
parameter never reruns model training or inference, only the watershed, the picker and what follows; a
classical parameter only the classical labels), that a new well is processed alone (plus the plate-level
tables, no training), that killed U-Net and Mask R-CNN inference jobs resume, Mask R-CNN centroids as
watershed markers and Mask R-CNN as the final method, pretrained models and cross-validation, and clear
errors for bad input.

The complete run of the tiny plate (the ensemble path, as in the demo: a tiny U-Net and a tiny Mask R-CNN
per fold and on all data, trained for seconds, out-of-fold candidates, the LightGBM picker; every label set
evaluated) is made once per session
(``trained_plate``); each test works on a private copy (``plate_workdir``).
"""
from __future__ import annotations

import shutil
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import yaml

from support import dry_run_jobs, run_snakemake

pytestmark = pytest.mark.workflow

WELL_RULES = {"ingest", "segment_classical", "estimate_scale", "infer_unet", "infer_maskrcnn", "watershed", "pick", "measure",
              "hcs_well"}
PLATE_RULES = {"plate_summary", "plate_qc", "evaluate", "hcs_plate"}
TRAINING_RULES = {"synth_training", "folds", "train_unet", "train_maskrcnn", "train_unet_fold", "train_maskrcnn_fold", "cross_validate_unet", "oof_candidates",
                  "train_picker", "cross_validate_ensemble"}
# what the ensemble's picker depends on: the U-Net candidates of the annotated images (watershed settings)
PICKER_RULES = {"oof_candidates", "train_picker", "cross_validate_ensemble"}


def planned_jobs(workdir, *targets) -> Counter:
    """(rule, well or label set or fold or '') of every job a dry run would execute."""
    return dry_run_jobs(run_snakemake(workdir, "--dry-run", *targets).stdout)


def edit_config(workdir, **changes):
    """Set config keys given as section__key=value (one level of nesting)."""
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    for key, value in changes.items():
        section, name = key.split("__")
        config[section][name] = value
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def mtime(path):
    return path.stat().st_mtime_ns


def test_demo_plate_end_to_end_and_reruns(plate_workdir):
    work = plate_workdir
    res = work / "results" / "DEMO"

    # per-well CSVs and plate summary, with counts near the synthetic truth (a tiny U-Net trained for seconds)
    truth = pd.read_csv(work.parent / "run" / "groundtruth" / "truth.csv")
    summary = pd.read_csv(res / "plate_summary.csv")
    assert list(summary["Metadata_Well"]) == ["A01", "A02"]
    for well, n_true in truth.groupby("well")["n_nuclei"].sum().items():
        well_csv = pd.read_csv(res / "wells" / f"{well}_summary.csv")
        n = int(well_csv["Count_Nuclei"].iloc[0])
        assert n == int(pd.read_csv(res / "wells" / f"{well}.csv")["Metadata_Object_Count"].iloc[0])
        assert n == int(summary.set_index("Metadata_Well").loc[well, "Count_Nuclei"])
        assert abs(n - n_true) <= max(2, 0.25 * n_true), (well, n, n_true)
    assert summary["Count_Nuclei"].iloc[1] > summary["Count_Nuclei"].iloc[0]  # density rises by column

    objects = pd.read_parquet(res / "A01" / "objects.parquet")
    for col in ["Metadata_Plate", "Metadata_Well", "Metadata_Site", "Metadata_ObjectNumber", "Nuclei_Location_Center_X",
                "Nuclei_AreaShape_Area", "Nuclei_Intensity_MeanIntensity_DNA", "Nuclei_Intensity_MeanIntensity_Marker",
                "Nuclei_Texture_Contrast_DNA_3", "Metadata_Ensemble_Source"]:
        assert col in objects.columns, col
    # the ensemble is the final method: each object's engine and predicted IoU, as in picks.parquet
    picks = pd.read_parquet(res / "A01" / "picks.parquet")
    assert set(objects["Metadata_Ensemble_Source"]) <= {"unet", "maskrcnn"}
    assert objects["Metadata_Ensemble_PredictedIoU"].between(0.3, 1).all()
    assert objects["Metadata_Ensemble_Source"].tolist() == picks["engine"].tolist()
    assert objects["Metadata_Ensemble_PredictedIoU"].tolist() == picks["predicted_iou"].tolist()
    for table in ("A01.csv", "A01_summary.csv"):
        well_csv = pd.read_csv(res / "wells" / table)
        assert well_csv["Metadata_Ensemble_FractionUNet"].iloc[0] == (picks["engine"] == "unet").mean()
        assert well_csv["Metadata_Ensemble_MeanPredictedIoU"].iloc[0] == pytest.approx(picks["predicted_iou"].mean())
        # seam QC of the ensemble's labels: its one field is smaller than a block (1 block, 0, 0), the columns are there
        assert well_csv[["Metadata_QC_Blocks", "Metadata_QC_NucleiAcrossSeams",
                         "Metadata_QC_NucleiLargerThanHalo"]].values.tolist() == [[1, 0, 0]]
    assert len(objects) == summary.set_index("Metadata_Well").loc["A01", "Count_Nuclei"]

    # U-Net maps (NGFF-like well store) and their instances
    from plateseg.io.ngff import channel_names, list_fields, open_field, read_labels

    assert list_fields(res / "A01" / "unet.zarr") == [1]
    assert channel_names(res / "A01" / "unet.zarr") == ["foreground", "boundary", "centre"]
    assert open_field(res / "A01" / "unet.zarr", 1).shape == (3, 256, 256)
    assert not (res / "A01" / "unet.zarr.partial").exists()
    assert read_labels(res / "A01" / "ensemble.zarr", 1).max() == len(objects)
    for row in picks.itertuples():  # every kept object is its engine's candidate (minus pixels of better picks)
        source = read_labels(res / "A01" / ("unet_labels.zarr" if row.engine == "unet" else "maskrcnn.zarr"), 1)
        mask = read_labels(res / "A01" / "ensemble.zarr", 1) == row.label
        assert mask.any() and (source[mask] == row.source_label).all()

    # the picker and the comparison of every method on the annotated images, held out from every model
    cv = pd.read_csv(work / "results" / "models" / "picker" / "cv_metrics.csv").set_index("method")
    assert set(cv.index) == {"classical", "unet", "maskrcnn", "ensemble", "oracle"}
    assert cv["mean_dsb_map"].between(0, 1).all() and (cv["total_n_true"] == cv.loc["unet", "total_n_true"]).all()
    assert (cv["n_images"] == 6).all() and cv.loc["unet", "total_n_true"] > 10  # every annotated image is scored
    assert abs(cv.loc["ensemble", "share_unet"] + cv.loc["ensemble", "share_maskrcnn"] - 1) < 1e-9
    assert -1 <= cv.loc["ensemble", "iou_spearman"] <= 1
    importances = pd.read_csv(work / "results" / "models" / "picker" / "importances.csv")
    assert "best_iou_other" in set(importances["feature"]) and abs(importances["gain_share"].sum() - 1) < 1e-6
    assert (work / "results" / "models" / "picker" / "importances.png").stat().st_size > 1000

    # Mask R-CNN instances: an NGFF label store and a table of the same objects (the tiny model over-detects)
    for well in ("A01", "A02"):
        table = pd.read_parquet(res / well / "maskrcnn.parquet")
        labels = read_labels(res / well / "maskrcnn.zarr", 1)
        assert len(table) > 5 and table["label"].tolist() == list(range(1, len(table) + 1))
        assert set(np.unique(labels)) == {0, *table["label"]}  # every row has pixels, every object a row
        assert table["score"].between(0.5, 1).all() and (table["field"] == 1).all()
        assert not (res / well / "maskrcnn.zarr.partial").exists()

    # every label set of the config is evaluated: the final one (ensemble), the classical baseline, both engines
    for labelset in ("ensemble", "unet", "classical", "maskrcnn"):
        ev = pd.read_csv(res / "evaluation" / f"{labelset}.csv")
        assert ev["labelset"].iloc[0] == labelset and ev["n_fields"].iloc[0] == 2 and ev["total_n_true"].iloc[0] > 10
        assert ev["total_n_pred"].iloc[0] > 10
        assert (0.2 if labelset != "maskrcnn" else 0.0) < ev["mean_dsb_map"].iloc[0] <= 1.0
    classical = pd.read_csv(res / "evaluation" / "classical.csv").iloc[0]
    assert abs(classical["total_n_pred"] - classical["total_n_true"]) <= 0.1 * classical["total_n_true"]
    assert (res / "qc" / "plate_counts.png").stat().st_size > 1000
    for log in (work / "logs" / "DEMO" / "A01").iterdir():
        assert log.stat().st_size > 0, log  # every rule wrote its log
    train_log = (work / "logs" / "training" / "train_unet_all.log").read_text()
    assert "epoch 1/10" in train_log and "epoch 10/10" in train_log
    assert "tile 4/4 written" in (work / "logs" / "DEMO" / "A01" / "infer_unet.log").read_text()
    train_log = (work / "logs" / "training" / "train_maskrcnn_all.log").read_text()
    assert "epoch 1/15" in train_log and "epoch 15/15" in train_log
    assert "tile 4/4 written" in (work / "logs" / "DEMO" / "A01" / "infer_maskrcnn.log").read_text()

    # an immediate second run has nothing to do
    assert planned_jobs(work) == Counter()

    # a changed watershed parameter reruns watershed and everything after it (with the picker, which learns from
    # the U-Net candidates) and the U-Net fold models (validated with the configured watershed), never the models
    # on all data or inference
    model, maps = work / "results" / "models" / "unet" / "all.pt", res / "A01" / "unet.zarr" / "zarr.json"
    mrcnn = work / "results" / "models" / "maskrcnn" / "all.pt"
    before = {model: mtime(model), maps: mtime(maps), mrcnn: mtime(mrcnn)}
    edit_config(work, watershed__peak_threshold=0.4)
    jobs = planned_jobs(work)
    assert {rule for rule, _ in jobs} == {"watershed", "pick", "measure", "hcs_well", "train_unet_fold"} | PLATE_RULES | PICKER_RULES, jobs
    assert {fold for rule, fold in jobs if rule == "train_unet_fold"} == {"0", "1"}
    assert jobs[("watershed", "A01")] == 1 and jobs[("watershed", "A02")] == 1
    assert jobs[("evaluate", "unet")] == 1 and jobs[("evaluate", "ensemble")] == 1
    assert ("evaluate", "classical") not in jobs and ("evaluate", "maskrcnn") not in jobs
    run_snakemake(work)
    assert {p: mtime(p) for p in before} == before
    assert planned_jobs(work) == Counter()

    # a changed classical parameter reruns only the classical labels and their evaluations
    edit_config(work, segmentation__classical={**yaml.safe_load((work / "config.yaml").read_text())["segmentation"]["classical"], "sigma": 2.0})
    jobs = planned_jobs(work)
    expected = {("segment_classical", "A01"), ("segment_classical", "A02"), ("evaluate", "classical"), ("cross_validate_ensemble", ""),
                ("hcs_well", "A01"), ("hcs_well", "A02"), ("hcs_plate", "")}  # the HCS plate holds the classical labels
    assert set(jobs) == expected, jobs
    ingest_mtime = mtime(res / "A01" / "image.zarr" / "zarr.json")
    run_snakemake(work)
    assert mtime(res / "A01" / "image.zarr" / "zarr.json") == ingest_mtime
    assert {p: mtime(p) for p in before} == before
    assert planned_jobs(work) == Counter()


def test_new_well_processes_only_that_well(plate_workdir, tmp_path):
    from plateseg.io.synth import write_demo_run

    work = plate_workdir
    extra = tmp_path / "extra"
    write_demo_run(extra, plate="DEMO", rows="A", columns=(3,), fields=1, shape=(256, 256), seed=3)
    run = work.parent / "run"
    for sub in ("images", "groundtruth"):
        for f in (extra / sub).glob("DEMO_A03_*"):
            shutil.copy(f, run / sub / f.name)
    jobs = planned_jobs(work)
    assert {w for (rule, w) in jobs if rule in WELL_RULES} == {"A03"}
    assert {rule for rule, _ in jobs} == WELL_RULES | PLATE_RULES  # no training
    run_snakemake(work)
    summary = pd.read_csv(work / "results" / "DEMO" / "plate_summary.csv")
    assert list(summary["Metadata_Well"]) == ["A01", "A02", "A03"]


def test_killed_inference_resumes_in_the_next_run(plate_workdir):
    """A partial maps store left by a killed infer_unet job is resumed by the next snakemake run."""
    from plateseg.pipeline.infer import infer_well_maps, partial_path, read_progress
    from plateseg.io.ngff import open_field

    work = plate_workdir
    well = work / "results" / "DEMO" / "A01"
    reference = open_field(well / "unet.zarr", 1)[...]
    # as if the well's infer_unet job had been killed: no maps, nothing made from them
    for out in ("unet.zarr", "unet_labels.zarr", "ensemble.zarr"):
        shutil.rmtree(well / out)
    (well / "objects.parquet").unlink()
    (well / "picks.parquet").unlink()
    (work / "results" / "DEMO" / "wells" / "A01.csv").unlink()

    class Killed(Exception):
        pass

    def kill_after_first_tile(field, tile):
        raise Killed

    with pytest.raises(Killed):  # what the rule does (same settings), killed after the first tile
        infer_well_maps(well / "image.zarr", work / "results" / "models" / "unet" / "all.pt", well / "unet.zarr",
                        channels=[0], tile_size=128, halo=32, batch_size=4, device="cpu",
                        on_tile_written=kill_after_first_tile)
    assert read_progress(partial_path(well / "unet.zarr"))["next_tile"] == {"1": 1}
    jobs = planned_jobs(work)
    assert jobs[("infer_unet", "A01")] == 1 and not {r for r, _ in jobs} & TRAINING_RULES, jobs
    run_snakemake(work)
    log = (work / "logs" / "DEMO" / "A01" / "infer_unet.log").read_text()
    assert "resuming at tile 1" in log and "tile 1/4 written" not in log and "tile 4/4 written" in log
    assert (open_field(well / "unet.zarr", 1)[...] == reference).all()
    assert not partial_path(well / "unet.zarr").exists()


def test_killed_maskrcnn_inference_resumes_in_the_next_run(plate_workdir):
    """A partial Mask R-CNN store (labels + per-tile rows) left by a killed job is resumed by the next run."""
    from plateseg.pipeline.infer import infer_well_instances, partial_path, read_progress
    from plateseg.io.ngff import read_labels

    work = plate_workdir
    well = work / "results" / "DEMO" / "A02"
    reference = read_labels(well / "maskrcnn.zarr", 1)
    reference_table = pd.read_parquet(well / "maskrcnn.parquet")
    # as if the well's infer_maskrcnn job had been killed: no instances, nothing made from them
    shutil.rmtree(well / "maskrcnn.zarr")
    (well / "maskrcnn.parquet").unlink()
    (work / "results" / "DEMO" / "evaluation" / "maskrcnn.csv").unlink()

    class Killed(Exception):
        pass

    def kill_after_two_tiles(field, tile):
        if tile.number == 1:
            raise Killed

    config = yaml.safe_load((work / "config.yaml").read_text())["maskrcnn"]
    with pytest.raises(Killed):  # what the rule does (same settings), killed after the second tile
        infer_well_instances(well / "image.zarr", work / "results" / "models" / "maskrcnn" / "all.pt", well / "maskrcnn.zarr",
                             well / "maskrcnn.parquet", channels=[0], tile_size=128, halo=32, batch_size=4, device="cpu",
                             score_threshold=config["score_threshold"], mask_threshold=config["mask_threshold"],
                             min_area=config["min_area"], on_tile_written=kill_after_two_tiles)
    assert read_progress(partial_path(well / "maskrcnn.zarr"))["next_tile"] == {"1": 2}
    jobs = planned_jobs(work)
    assert jobs[("infer_maskrcnn", "A02")] == 1 and ("infer_maskrcnn", "A01") not in jobs, jobs
    assert not {r for r, _ in jobs} & TRAINING_RULES, jobs
    run_snakemake(work)
    log = (work / "logs" / "DEMO" / "A02" / "infer_maskrcnn.log").read_text()
    assert "resuming at tile 2" in log and "tile 2/4 written" not in log and "tile 4/4 written" in log
    assert np.array_equal(read_labels(well / "maskrcnn.zarr", 1), reference)
    pd.testing.assert_frame_equal(pd.read_parquet(well / "maskrcnn.parquet"), reference_table)
    assert not partial_path(well / "maskrcnn.zarr").exists()


def test_maskrcnn_centroids_as_markers_and_maskrcnn_as_final_method(plate_workdir):
    from plateseg.io.ngff import read_labels

    work = plate_workdir
    res = work / "results" / "DEMO"
    models = {p: mtime(p) for p in (work / "results" / "models").rglob("*.pt")}
    # watershed markers from the Mask R-CNN centroids (seed 003): only the watershed and what follows reruns (the
    # U-Net fold models are validated with centre markers either way: plateseg.config.params.unet_validation_watershed)
    edit_config(work, watershed__markers="points")
    jobs = planned_jobs(work)
    assert {rule for rule, _ in jobs} == {"watershed", "pick", "measure", "hcs_well"} | PLATE_RULES | PICKER_RULES, jobs
    assert ("evaluate", "maskrcnn") not in jobs
    run_snakemake(work)
    assert "markers points" in (work / "logs" / "DEMO" / "A01" / "watershed.log").read_text()
    from plateseg.io.ngff import open_field
    from plateseg.segment.watershed import instances_from_maps

    settings = yaml.safe_load((work / "config.yaml").read_text())["watershed"]
    settings.pop("markers")
    for well in ("A01", "A02"):
        labels = read_labels(res / well / "unet_labels.zarr", 1)
        points = pd.read_parquet(res / well / "maskrcnn.parquet")[["centroid_y", "centroid_x"]].to_numpy()
        maps = open_field(res / well / "unet.zarr", 1)[...].astype(np.float32)
        # the stored labels are the watershed seeded by this well's Mask R-CNN centroids, not by heatmap peaks
        assert labels.max() > 5
        assert np.array_equal(labels, instances_from_maps(maps, mode="points", points=points, **settings))
        assert not np.array_equal(labels, instances_from_maps(maps, mode="centre", **settings))

    # Mask R-CNN as the final method: measured and summarised from maskrcnn.zarr, no inference or training rerun
    edit_config(work, segmentation__method="maskrcnn")
    jobs = planned_jobs(work)
    assert {rule for rule, _ in jobs} == {"measure", "plate_summary", "plate_qc", "hcs_well", "hcs_plate"}, jobs
    run_snakemake(work)
    for well in ("A01", "A02"):
        objects = pd.read_parquet(res / well / "objects.parquet")
        # ensemble columns only for the ensemble method (issue 11)
        assert not [c for c in objects.columns if "Ensemble" in c]
        assert not [c for c in pd.read_csv(res / "wells" / f"{well}.csv").columns if "Ensemble" in c]
        assert len(objects) == len(pd.read_parquet(res / well / "maskrcnn.parquet"))
        assert int(pd.read_csv(res / "wells" / f"{well}_summary.csv")["Count_Nuclei"].iloc[0]) == len(objects)
    assert {p: mtime(p) for p in models} == models


def test_pretrained_checkpoint_replaces_training(plate_workdir):
    work = plate_workdir
    (work / "models").mkdir()
    for engine in ("unet", "maskrcnn"):
        shutil.copy(work / "results" / "models" / engine / "all.pt", work / "models" / f"nuclei_{engine}.pt")
    shutil.copy(work / "results" / "models" / "picker" / "picker.json", work / "models" / "picker.json")
    edit_config(work, models__source="pretrained", models__unet="models/nuclei_unet.pt",
                models__maskrcnn="models/nuclei_maskrcnn.pt", models__picker="models/picker.json")
    shutil.rmtree(work / "results" / "models")
    jobs = planned_jobs(work)
    # a new U-Net checkpoint: each field's scale is measured again with it
    assert {rule for rule, _ in jobs} == {"estimate_scale", "infer_unet", "infer_maskrcnn", "watershed", "pick", "measure",
                                          "hcs_well", "training_curves"} | PLATE_RULES, jobs
    assert ("evaluate", "classical") not in jobs

    # the U-Net alone needs no picker: the workflow loads with models.picker null (it did not, issue 13)
    edit_config(work, segmentation__method="unet", models__picker=None, evaluation__compare=[])
    assert {rule for rule, _ in planned_jobs(work)} == {"estimate_scale", "infer_unet", "watershed", "measure",
                                                        "hcs_well", "training_curves"} | PLATE_RULES

    # a corrupt checkpoint stops the first rule that loads it (estimate_scale, before any inference), naming the
    # file, in the rule's own log
    (work / "models" / "broken.pt").write_text("this is a text file renamed .pt\n")
    edit_config(work, models__unet="models/broken.pt")
    proc = run_snakemake(work, check=False)
    assert proc.returncode != 0
    failed = [p.parent.name for p in (work / "logs" / "DEMO").glob("*/estimate_scale.log")
              if "models/broken.pt: not a readable plateseg-unet checkpoint" in p.read_text()]
    assert failed and not [w for w in failed if (work / "results" / "DEMO" / w / "scale.json").exists()]
    # no inference ran on it (the previous model's maps are left for snakemake to redo)
    assert not [p for p in (work / "logs" / "DEMO").glob("*/infer_unet.log") if "broken.pt" in p.read_text()]

    edit_config(work, models__unet="models/missing.pt")
    proc = run_snakemake(work, "--dry-run", check=False)
    assert proc.returncode != 0 and "models.unet" in proc.stdout + proc.stderr


def test_cross_validation_trains_fold_models(plate_workdir):
    work = plate_workdir
    model = work / "results" / "models" / "unet" / "all.pt"
    before = mtime(model)
    jobs = planned_jobs(work, "cross_validate_unet")
    # the fold models exist already: the ensemble's out-of-fold candidates needed them
    assert set(jobs) == {("cross_validate_unet", "")}, jobs
    run_snakemake(work, "cross_validate_unet")
    assert mtime(model) == before

    folds = pd.read_csv(work / "results" / "training" / "folds.csv")
    assert set(folds["fold"]) == {0, 1} and folds.groupby("group")["fold"].nunique().max() == 1
    cv = pd.read_csv(work / "results" / "models" / "unet" / "cv_metrics.csv", dtype={"fold": str})
    assert list(cv["fold"]) == ["0", "1", "mean"]
    assert (cv["n_train"] + cv["n_val"] == 6).all() and cv["mean_dsb_map"].between(0, 1).all()
    assert "val dice" in (work / "logs" / "training" / "train_unet_0.log").read_text()

    import torch

    meta = torch.load(work / "results" / "models" / "unet" / "0.pt", weights_only=True)
    held_out = set(folds.loc[folds["fold"] == 0, "id"])
    assert set(meta["val_ids"]) == held_out and not held_out & set(meta["train_ids"]) and meta["fold"] == "0"


def test_bad_config_names_the_key(plate_workdir):
    config = yaml.safe_load((plate_workdir / "config.yaml").read_text())
    config["channels"]["nuclear"] = "7"
    (plate_workdir / "config.yaml").write_text(yaml.safe_dump(config))
    proc = run_snakemake(plate_workdir, "--dry-run", check=False)
    assert proc.returncode != 0
    assert "channels.nuclear" in proc.stdout + proc.stderr

    config["channels"]["nuclear"] = "1"
    config["tiling"]["tile_size"] = "big"
    (plate_workdir / "config.yaml").write_text(yaml.safe_dump(config))
    proc = run_snakemake(plate_workdir, "--dry-run", check=False)
    assert proc.returncode != 0
    assert "tile_size" in proc.stdout + proc.stderr

    config["tiling"]["tile_size"] = 128
    config["unet"]["crop_size"] = 100
    (plate_workdir / "config.yaml").write_text(yaml.safe_dump(config))
    proc = run_snakemake(plate_workdir, "--dry-run", check=False)
    assert proc.returncode != 0
    assert "unet.crop_size" in proc.stdout + proc.stderr


def test_unmatched_files_are_reported(plate_workdir):
    (plate_workdir.parent / "run" / "images" / "notes_about_plate.tif").write_bytes(b"")
    proc = run_snakemake(plate_workdir, "--dry-run")
    assert "notes_about_plate.tif" in proc.stdout + proc.stderr


def test_lint_is_clean(plate_workdir):
    proc = run_snakemake(plate_workdir, "--lint", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Congratulations" in out, out


@pytest.mark.parametrize("engine, well", [("unet", "A01"), ("maskrcnn", "A02")])
def test_sigkill_mid_inference_then_rerun_gives_identical_tables(plate_workdir, engine, well):
    """A real SIGKILL of snakemake and its infer job in the middle of the job, then --unlock and a rerun: the job
    resumes its partial store, and every table is byte-identical to the uninterrupted run's (resuming at a later
    tile is tested in tests/pipeline/test_inference.py)."""
    import os
    import signal
    import subprocess
    import time

    from support import REPO, SNAKEMAKE

    from plateseg.pipeline.infer import partial_path

    work = plate_workdir
    res = work / "results" / "DEMO"
    reference = {p.relative_to(res): p.read_bytes() for p in [*(res / "wells").glob("*.csv"), res / "plate_summary.csv",
                                                               res / well / "objects.parquet"]}
    out = res / well / f"{engine}.zarr"
    log = work / "logs" / "DEMO" / well / f"infer_{engine}.log"
    shutil.rmtree(out)
    log.unlink()
    cmd = [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(work), "--configfile",
           str(work / "config.yaml"), "--cores", "1", str(out.relative_to(work))]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    # the job has opened its partial store and started on the tiles (4 tiles of a tiny model go in one batch,
    # so the kill lands between the first and the last write, or before the first)
    while not (partial_path(out) / "progress.json").is_file():
        assert proc.poll() is None and time.monotonic() < deadline, "the job ended (or hung) before its tiles"
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)  # snakemake and its job, as a scheduler kills a job
    proc.wait()
    assert not out.exists() and partial_path(out).is_dir()
    run_snakemake(work, "--unlock")
    # the killed job's output first (a rerun of the whole plate would only rerun it if asked to: the tables
    # downstream of it are still there), then everything after it
    run_snakemake(work, "--rerun-incomplete", str(out.relative_to(work)))
    text = log.read_text()
    assert "resuming the partial store" in text, text
    assert out.is_dir() and not partial_path(out).exists()
    run_snakemake(work)
    for rel, content in reference.items():
        assert (res / rel).read_bytes() == content, rel
