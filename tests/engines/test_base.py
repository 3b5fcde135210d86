"""The engine base: settings, crops, the training loop, checkpoints (also ones written before the
base existed), the prediction set-up; and what both engines get from it (determinism)."""
import gzip
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from plateseg.engines.base import (CropDataset, EngineParams, checkpoint_io, deterministic,
                                   field_reader, fit, params_from_meta)

DATA = Path(__file__).resolve().parents[1] / "data"


def test_training_logs_and_is_deterministic_on_cpu(engine, caplog):
    """Both engines: two runs with the same inputs and settings give the same losses and weights."""
    ims, labs = engine.data
    p = dict(engine.tiny, epochs=1, samples_per_epoch=8 if engine.name == "unet" else 2)
    with caplog.at_level(logging.INFO, logger=engine.module.__name__):
        m1, h1 = engine.train(ims[:2], labs[:2], p)
    assert "epoch 1/1 loss" in caplog.text
    m2, h2 = engine.train(ims[:2], labs[:2], p)
    assert h1[0]["loss"] == h2[0]["loss"]
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)


def test_engine_settings_share_the_base_fields(engine):
    base = {f.name for f in EngineParams.__dataclass_fields__.values()}
    cls = engine.module.UNetParams if engine.name == "unet" else engine.module.MaskRCNNParams
    assert issubclass(cls, EngineParams) and base <= set(cls.__dataclass_fields__)
    with pytest.raises(TypeError, match="U-Net" if engine.name == "unet" else "Mask R-CNN"):
        cls.coerce({"epoch": 3})
    with pytest.raises(ValueError, match="channels"):
        cls.coerce({"channels": []})


# --------------------------------------------------------------------------- checkpoints of 895350f

def test_legacy_unet_checkpoint_loads_and_predicts_as_before():
    """tests/data/legacy_unet.pt and its expected maps were written by the code before the engine base."""
    from plateseg.engines.unet import UNetParams, load_checkpoint, predict_maps

    model, meta = load_checkpoint(DATA / "legacy_unet.pt", "cpu")
    assert meta["format"] == "plateseg-unet" and meta["data_hash"] == "legacy-unet" and meta["fold"] == 0
    assert meta["arch"]["encoder_depth"] == 3 and meta["arch"]["decoder_channels"] == [16, 8, 8]
    assert meta["heads"] == ["foreground", "boundary", "centre"] and meta["params"]["val_mode"] == "boundary"
    maps = predict_maps(model, meta, np.load(DATA / "legacy_input.npy"), 32, 8)
    # equal up to float32 rounding (torch's CPU kernels may sum in another order with other thread counts / load)
    np.testing.assert_allclose(maps, np.load(DATA / "legacy_unet_maps.npy"), rtol=1e-5, atol=1e-6)
    assert params_from_meta(UNetParams, meta).encoder_depth == 3  # its legacy val_mode is ignored


def test_legacy_maskrcnn_checkpoint_loads_and_predicts_as_before(tmp_path):
    """tests/data/legacy_maskrcnn.pt.gz (gzipped: its deep ResNet stages are zero) and its expected
    labels and table were written by the code before the engine base."""
    from plateseg.engines.maskrcnn import load_checkpoint, predict_instances

    path = tmp_path / "legacy_maskrcnn.pt"
    with gzip.open(DATA / "legacy_maskrcnn.pt.gz", "rb") as src, open(path, "wb") as dst:
        shutil.copyfileobj(src, dst)
    model, meta = load_checkpoint(path, "cpu")
    assert meta["format"] == "plateseg-maskrcnn" and meta["data_hash"] == "legacy-maskrcnn"
    assert meta["arch"]["fpn_channels"] == 16 and meta["arch"]["box_detections_per_img"] == 100
    lab, table = predict_instances(model, meta, np.load(DATA / "legacy_input.npy"), 48, 16,
                                   score_threshold=0.5)
    assert lab.max() > 10
    np.testing.assert_array_equal(lab, np.load(DATA / "legacy_maskrcnn_labels.npy"))
    expected = pd.read_csv(DATA / "legacy_maskrcnn_table.csv").astype(table.dtypes.to_dict())
    pd.testing.assert_frame_equal(table, expected, check_exact=False, rtol=1e-12)


# --------------------------------------------------------------------------- parts of the base

def _square(n=40):
    lab = np.zeros((n, n), int)
    lab[10:22, 8:20] = 1
    return lab * 100.0 + 5, lab


def test_crop_dataset_is_reproducible_per_epoch_and_item():
    img, lab = _square()
    ds = CropDataset([img, img], [lab, lab], {"crop_size": 16, "samples_per_epoch": 5, "batch_size": 2})
    assert len(ds) == 5 and len(ds._perm) >= 5
    x, planes = ds[3]
    assert x.shape == (1, 16, 16) and planes.shape == (1, 16, 16) and x.dtype == torch.float32
    again = CropDataset([img, img], [lab, lab], {"crop_size": 16, "samples_per_epoch": 5})[3]
    assert torch.equal(again[0], x) and torch.equal(again[1], planes)
    ds.set_epoch(1)
    assert not torch.equal(ds[3][0], x)
    # image and label planes stay aligned through zoom, crop, jitter, rotation and flip
    for i in range(len(ds)):
        x, planes = ds[i]
        fg = planes[0] > 0
        if fg.sum() > 10 and (~fg).sum() > 10:
            assert x[0][fg].mean() > x[0][~fg].mean() + 0.5
    with pytest.raises(ValueError, match="does not match"):
        CropDataset([img], [lab[:5]])
    with pytest.raises(ValueError, match="as many masks"):
        CropDataset([img], [])


def test_deterministic_restores_the_previous_state():
    before = torch.are_deterministic_algorithms_enabled()
    with deterministic(3, torch.device("cpu")):
        assert torch.are_deterministic_algorithms_enabled()
        a = torch.rand(1)
    with deterministic(3, torch.device("cpu")):
        assert torch.equal(torch.rand(1), a)
    assert torch.are_deterministic_algorithms_enabled() == before


def _conv_fit(**kw):
    img, lab = _square()
    p = EngineParams.coerce(dict({"epochs": 4, "batch_size": 2, "crop_size": 16, "device": "cpu",
                                  "val_every": 2}, **kw.pop("params", {})))

    def loss(model, batch, device, amp):
        x, y = batch
        out = model(x)
        value = (out - y).pow(2).mean()
        return value, len(x), {"loss_sq": float(value.detach())}, {"objects": int((y > 0).any(dim=(1, 2, 3)).sum())}

    return fit(p, lambda: torch.nn.Conv2d(1, 1, 3, padding=1),
               lambda: CropDataset([img], [lab], p), loss, title="conv", log=logging.getLogger("t"), **kw)


def test_fit_records_validates_and_stops_when_asked():
    calls = []
    model, hist = _conv_fit(validate=lambda m, v, d: calls.append(v) or {"val_x": 1.0}, val="held out",
                            val_format="x {val_x}")
    assert [r["epoch"] for r in hist] == [1, 2, 3, 4] and not model.training
    assert calls == ["held out"] * 2 and "val_x" in hist[1] and "val_x" not in hist[0]
    assert list(hist[0])[:5] == ["epoch", "loss", "loss_sq", "lr", "steps"]
    assert 0 <= hist[0]["objects"] <= 1 and hist[-1]["loss"] < hist[0]["loss"]
    assert hist[-1]["lr"] == pytest.approx(1e-3 * 0.05)  # cosine decay to min_lr_ratio
    _, short = _conv_fit(on_epoch_end=lambda rec: rec["epoch"] == 2)
    assert [r["epoch"] for r in short] == [1, 2] and short[1]["loss"] == hist[1]["loss"]
    start = torch.nn.Conv2d(1, 1, 3, padding=1).state_dict()
    cont, _ = _conv_fit(initial_weights=start, params={"epochs": 1, "lr": 1e-12})
    fresh, _ = _conv_fit(params={"epochs": 1, "lr": 1e-12})
    assert torch.allclose(cont.weight, start["weight"])  # started from the given weights ...
    assert not torch.allclose(fresh.weight, start["weight"])  # ... not from the seeded ones


def test_fit_with_freeze_bn_keeps_the_batchnorm_statistics():
    """``freeze_bn`` (fine-tuning): BatchNorm normalises with the starting running statistics and keeps them,
    while the weights (the BatchNorm affine ones too) train; without it the statistics move to the new crops."""
    img, lab = _square()
    start = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3, padding=1), torch.nn.BatchNorm2d(1))
    with torch.no_grad():
        start[1].running_mean.fill_(5.0)
        start[1].running_var.fill_(4.0)
    weights = {k: v.clone() for k, v in start.state_dict().items()}

    def loss(model, batch, device, amp):
        value = (model(batch[0]) - batch[1]).pow(2).mean()
        return value, len(batch[0]), {}, {}

    def run(freeze):
        p = EngineParams.coerce({"epochs": 2, "batch_size": 2, "crop_size": 16, "device": "cpu", "freeze_bn": freeze})
        model, _ = fit(p, lambda: torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3, padding=1), torch.nn.BatchNorm2d(1)),
                       lambda: CropDataset([img], [lab], p), loss, title="bn", log=logging.getLogger("t"),
                       initial_weights=weights)
        return model.state_dict()

    frozen, free = run(True), run(False)
    for key in ("1.running_mean", "1.running_var", "1.num_batches_tracked"):
        assert torch.equal(frozen[key], weights[key])
        assert not torch.equal(free[key], weights[key])
    assert not torch.equal(frozen["0.weight"], weights["0.weight"])
    assert not torch.equal(frozen["1.weight"], weights["1.weight"])


def test_fit_stops_on_a_non_finite_loss():
    def nan_loss(model, batch, device, amp):
        return model(batch[0]).sum() * float("nan"), 1, {}, {}

    img, lab = _square()
    p = EngineParams.coerce({"epochs": 1, "batch_size": 1, "crop_size": 16, "device": "cpu"})
    with pytest.raises(FloatingPointError, match="lower lr"):
        fit(p, lambda: torch.nn.Conv2d(1, 1, 1), lambda: CropDataset([img], [lab], p), nan_loss,
            title="nan", log=logging.getLogger("t"))


def test_checkpoint_io_and_legacy_params(tmp_path):
    save, load = checkpoint_io("demo", 2, ("arch",), lambda arch: torch.nn.Linear(2, arch["out"]))
    model = torch.nn.Linear(2, 3)
    save(tmp_path / "m.pt", model, {"arch": {"out": 3}, "params": {"epochs": 2, "gone": 1}})
    loaded, meta = load(tmp_path / "m.pt", "cpu")
    assert torch.equal(loaded.weight, model.weight) and meta["format_version"] == 2
    assert params_from_meta(EngineParams, meta).epochs == 2  # the unknown legacy key is ignored
    with pytest.raises(ValueError, match="lacks"):
        save(tmp_path / "x.pt", model, {})
    other_save, _ = checkpoint_io("other", 1, (), lambda arch: torch.nn.Linear(2, 3))
    other_save(tmp_path / "o.pt", model, {"arch": {}})
    with pytest.raises(ValueError, match="not a demo checkpoint"):
        load(tmp_path / "o.pt")


def test_field_reader_channels_and_normalisation():
    meta = {"channels": [1], "arch": {"in_channels": 1}, "normalization": {"p_low": 0.0, "p_high": 100.0}}
    img = np.stack([np.zeros((4, 6)), np.arange(24.0).reshape(4, 6)])
    read, shape = field_reader(meta, img)
    assert shape == (4, 6)
    win = read((slice(0, 2), slice(0, 6)))
    assert win.shape == (1, 2, 6) and win.min() == 0.0 and np.isclose(win.max(), 11 / 23)
    read2, _ = field_reader(meta, img, norm_range=(np.array([0.0]), np.array([11.0])))
    assert np.isclose(read2((slice(0, 2), slice(0, 6))).max(), 1.0)
    with pytest.raises(ValueError, match="channels"):
        field_reader(meta, img, channels=[0, 1])
    with pytest.raises(ValueError, match="2-D"):
        field_reader(meta, img[1])


def test_finetune_params_keep_the_checkpoints_model_crops_and_augmentation():
    """Fine-tuning trains the model the way it was trained: architecture, normalisation, crops and augmentation from
    the checkpoint (its scale_range is also the zoom range inference takes it to cover, so the fine-tuned
    checkpoint is zoomed as the start one); schedule and validation settings from the run's settings."""
    from plateseg.engines.base import finetune_params
    from plateseg.engines.scale import model_scale
    from plateseg.engines.unet import UNetParams, checkpoint_meta

    start = checkpoint_meta({"decoder_channels": [32, 16, 8, 8], "crop_size": 192, "scale_range": [0.6, 1.6],
                             "gamma_range": [0.7, 1.4], "noise_std": 0.03, "p_high": 99.0}, nucleus_diameter_range=[10, 48])
    settings = {"decoder_channels": [64, 32, 16, 16], "crop_size": 128, "scale_range": [0.8, 1.25], "noise_std": 0.0,
                "lr": 1e-4, "epochs": 3, "p_high": 99.8, "val_watershed": {"mode": "centre", "min_area": 9}}
    p = UNetParams.coerce(finetune_params(settings, start, UNetParams))
    assert (p.decoder_channels, p.crop_size, p.scale_range, p.gamma_range, p.noise_std, p.p_high) == (
        (32, 16, 8, 8), 192, (0.6, 1.6), (0.7, 1.4), 0.03, 99.0)
    assert (p.lr, p.epochs, p.val_watershed) == (1e-4, 3, {"mode": "centre", "min_area": 9})
    tuned = checkpoint_meta(p, nucleus_diameter_range=[10, 48])
    assert model_scale(tuned) == model_scale(start)
