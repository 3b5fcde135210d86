"""Workflow runs with the shipped model set (models.source pretrained, the default; finetune): real snakemake on
real DSB2018 fields of the demo plate (demo/dsb2018-fluo), which the set never saw."""
from __future__ import annotations

import io
import json
import shutil

import pandas as pd
import pytest
import tifffile
import yaml

from plateseg.engines.scale import median_diameter
from support import REPO, dry_run_jobs, run_snakemake

pytestmark = pytest.mark.workflow

DEMO = REPO / "demo" / "dsb2018-fluo"
SET = REPO / "models" / "dsb2018-fluo"


def shipped_config(tmp_path, wells=("A02", "B02"), **changes):
    """The repository's config.yaml on a copy of some demo wells (images and truth), in ``tmp_path/work``."""
    run = tmp_path / "run"
    for sub in ("images", "groundtruth"):
        (run / sub).mkdir(parents=True)
        for well in wells:
            for f in sorted((DEMO / sub).glob(f"DSB_{well}_*")):
                shutil.copy2(f, run / sub / f.name)
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["input"]["dir"] = str(run / "images")
    config["evaluation"]["groundtruth"] = str(run / "groundtruth")
    for key, value in changes.items():
        node = config
        *path, last = key.split(".")
        for k in path:
            node = node.setdefault(k, {})
        node[last] = value
    work = tmp_path / "work"
    work.mkdir()
    (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return work


def test_default_config_runs_the_shipped_set_without_training(tmp_path, capsys):
    work = shipped_config(tmp_path)
    jobs = dry_run_jobs(run_snakemake(work, "--dry-run").stdout)
    assert not {rule for rule, _ in jobs} & {"synth_training", "train_unet", "train_maskrcnn", "train_picker"}, jobs
    run_snakemake(work)
    res = work / "results" / "DSB"
    assert not (work / "results" / "models").exists()
    # the set's files and thresholds were used
    log = (work / "logs" / "DSB" / "A02" / "infer_unet.log").read_text()
    assert str(SET / "unet.pt") in log
    settings = yaml.safe_load((SET / "settings.yaml").read_text())
    picks = pd.read_parquet(res / "A02" / "picks.parquet")
    assert (picks["predicted_iou"] >= settings["ensemble"]["min_iou"]).all() and len(picks) > 20
    # real nuclei, real scores: every label set segments these fields well
    truth = pd.read_csv(DEMO / "fields.csv")
    for labelset in ("ensemble", "unet", "maskrcnn", "classical"):
        ev = pd.read_csv(res / "evaluation" / f"{labelset}_fields.csv")
        assert len(ev) == 4 and ev["dsb_map"].mean() > 0.3, (labelset, ev["dsb_map"].mean())
    summary = pd.read_csv(res / "plate_summary.csv").set_index("Metadata_Well")
    for well in ("A02", "B02"):
        n_true = truth.loc[truth["well"] == well, "n_nuclei"].sum()
        assert abs(summary.loc[well, "Count_Nuclei"] - n_true) <= 0.15 * n_true, well
    # the synthetic marker's level rises down the rows (x3)
    col = "Mean_Nuclei_Intensity_MeanIntensity_Marker"
    assert summary.loc["B02", col] > 1.5 * summary.loc["A02", col]
    # segmentation.rescale auto: each field's nucleus diameter was measured (near the truth's) and lies within the
    # sizes the set covers, so no field was zoomed
    for well in ("A02", "B02"):
        scale = json.loads((res / well / "scale.json").read_text())
        assert sorted(scale["fields"]) == ["1", "2"]
        for field, entry in scale["fields"].items():
            truth_d = median_diameter(tifffile.imread(DEMO / "groundtruth" / f"DSB_{well}_s{field}_labels.tif"))
            assert entry["factor"] == 1.0 and abs(entry["diameter"] - truth_d) < 0.3 * truth_d, (well, entry, truth_d)
    assert "nucleus diameter" in (work / "logs" / "DSB" / "A02" / "estimate_scale.log").read_text()

    # the command line segments one image exactly as the run segmented that field (plateseg segment), and shows a
    # well's fields with the run's labels (plateseg qc)
    import numpy as np
    import zarr
    from PIL import Image

    from plateseg.cli import main

    assert main(["segment", str(DEMO / "images" / "DSB_B02_s2_w1.tif"), "-o", str(tmp_path / "b02.tif")]) == 0
    nuclei = zarr.open_group(str(res / "plate.zarr" / "B" / "2" / "2"), mode="r")["labels/nuclei/0"][...]
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "b02.tif"), nuclei)
    assert main(["qc", "DSB", "A02", "--results", str(work / "results"), "--figure", str(tmp_path / "a02.png")]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out), sep="\t")
    objects = pd.read_parquet(res / "A02" / "objects.parquet")
    assert table["Count_Nuclei"].tolist() == objects.groupby("Metadata_Site").size().tolist()
    assert table["Zoom"].tolist() == [1.0, 1.0] and table["Ensemble_MeanPredictedIoU"].between(0.5, 1).all()
    # each field's seam QC, summing to the well's columns
    for column in ("QC_Blocks", "QC_NucleiAcrossSeams", "QC_NucleiLargerThanHalo"):
        assert table[column].sum() == summary.loc["A02", f"Metadata_{column}"], column
    assert (table["QC_Blocks"] >= 1).all()
    px = np.asarray(Image.open(tmp_path / "a02.png").convert("RGB")).astype(int)
    cyan = (px[..., 0] < 40) & (px[..., 1] > 200) & (px[..., 2] > 220)   # U-Net contours
    magenta = (px[..., 0] > 220) & (px[..., 1] < 80) & (px[..., 2] > 180)  # Mask R-CNN contours
    assert cyan.sum() > 100 and magenta.sum() > 100
    # a zoom set in the config reruns the scale and everything after it, not the ingest
    config = yaml.safe_load((work / "config.yaml").read_text())
    config["segmentation"]["rescale"] = 0.5
    (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    rules = {rule for rule, _ in dry_run_jobs(run_snakemake(work, "--dry-run").stdout)}
    assert {"estimate_scale", "infer_unet", "infer_maskrcnn", "watershed", "pick", "measure"} <= rules, rules
    assert "ingest" not in rules


def test_unknown_set_lists_the_shipped_ones(tmp_path):
    work = shipped_config(tmp_path, wells=("A01",), **{"models.set": "dsb2018-flou"})
    proc = run_snakemake(work, "--dry-run", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "models.set" in out and "shipped sets: dsb2018-fluo" in out, out


def test_each_method_asks_only_for_its_models(tmp_path):
    work = shipped_config(tmp_path, wells=("A01",), **{"segmentation.method": "unet", "evaluation.compare": []})
    rules = {rule for rule, _ in dry_run_jobs(run_snakemake(work, "--dry-run").stdout)}
    assert "infer_unet" in rules and not rules & {"infer_maskrcnn", "pick", "train_picker"}, rules
    config = yaml.safe_load((work / "config.yaml").read_text())
    config["segmentation"]["method"] = "classical"
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    rules = {rule for rule, _ in dry_run_jobs(run_snakemake(work, "--dry-run").stdout)}
    assert not rules & {"estimate_scale", "infer_unet", "infer_maskrcnn", "pick"}, rules


def test_finetune_starts_both_engines_from_the_set(tmp_path):
    import torch

    tiny = {"training.synthetic.n_images": 6, "training.synthetic.size": 128, "training.folds": 2,
            "unet.epochs": 2, "unet.samples_per_epoch": 16, "unet.batch_size": 4, "unet.crop_size": 64, "unet.lr": 2e-4,
            "unet.val_every": 2, "maskrcnn.epochs": 1, "maskrcnn.samples_per_epoch": 4, "maskrcnn.batch_size": 2,
            "maskrcnn.crop_size": 64, "maskrcnn.lr": 1e-4, "maskrcnn.val_every": 1,
            # the config's architecture differs from the set's: the set's wins
            "unet.decoder_channels": [16, 8, 8, 8], "maskrcnn.fpn_channels": 32}
    work = shipped_config(tmp_path, wells=("A02",), **{"models.source": "finetune", **tiny})
    run_snakemake(work)
    models = work / "results" / "models"
    for engine in ("unet", "maskrcnn"):
        shipped = torch.load(SET / f"{engine}.pt", map_location="cpu", weights_only=True)
        for name in ("all", "0", "1"):
            tuned = torch.load(models / engine / f"{name}.pt", map_location="cpu", weights_only=True)
            assert tuned["finetuned_from"] == str(SET / f"{engine}.pt")
            assert tuned["arch"] == shipped["arch"] and tuned["nucleus_diameter"] == shipped["nucleus_diameter"]
            assert len(tuned["history"]) == tiny[f"{engine}.epochs"]
            changed = [k for k, v in tuned["state_dict"].items()
                       if v.is_floating_point() and not torch.equal(v.half(), shipped["state_dict"][k])]
            assert changed, (engine, name)
        # the fold models vote on whether fine-tuning helped; inference uses the winner (final.pt)
        check = pd.read_csv(models / engine / "finetune_check.csv", dtype={"fold": str})
        assert list(check["fold"]) == ["0", "1", "mean"] and (check["n_images"] > 0).all()
        mean = check.iloc[-1]
        assert mean["n_images"] == check["n_images"].iloc[:-1].sum()
        helped = mean["dsb_map_finetuned"] > mean["dsb_map_initial"]
        assert set(check["choice"]) == {"finetuned" if helped else "initial"}
        kept = models / engine / "all.pt" if helped else SET / f"{engine}.pt"
        assert (models / engine / "final.pt").read_bytes() == kept.read_bytes()
        log = (work / "logs" / "training" / f"choose_model_{engine}.log").read_text()
        assert ("using the fine-tuned model" if helped else "fine-tuning did not help") in log
    # the picker is retrained on the fine-tuned fold models' out-of-fold candidates
    assert (models / "picker" / "picker.json").is_file() and (models / "picker" / "cv_metrics.csv").is_file()
    ev = pd.read_csv(work / "results" / "DSB" / "evaluation" / "ensemble_fields.csv")
    assert len(ev) == 2 and ev["dsb_map"].between(0, 1).all()
