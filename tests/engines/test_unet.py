import os

import numpy as np
import pytest
import torch

from plateseg.engines.normalize import percentile_normalize
from plateseg.engines.targets import boundary_target, centre_heatmap
from plateseg.engines.unet import (HEADS, TrainingSet, UNetParams, build_unet, checkpoint_meta,
                                   focal_loss, load_checkpoint, predict_maps,
                                   save_checkpoint, train_unet, unet_loss)
from plateseg.segment.watershed import instances_from_maps


def test_params():
    p = UNetParams.coerce({"epochs": 3, "decoder_channels": [8, 8, 8], "encoder_depth": 3})
    assert p.decoder_channels == (8, 8, 8) and p.epochs == 3
    with pytest.raises(TypeError):
        UNetParams.coerce({"epoch": 3})
    with pytest.raises(ValueError):
        UNetParams.coerce({"encoder_depth": 3})  # decoder_channels has 4 entries
    with pytest.raises(ValueError):
        UNetParams.coerce({"crop_size": 100})


def test_model_heads_and_attention():
    m = build_unet("resnet18", 3, (32, 32, 16), decoder_attention_type="scse", in_channels=2)
    out = m(torch.zeros(2, 2, 32, 32))
    assert out.shape == (2, len(HEADS), 32, 32)
    assert HEADS == ("foreground", "boundary", "centre")


def test_training_targets_without_augmentation(unet_data, unet_tiny):
    ims, labs = unet_data
    p = dict(unet_tiny, crop_size=96, scale_range=(1.0, 1.0), flips=False, rot90=False,
             intensity_jitter=0.0, boundary_width=2.0, heatmap_sigma=2.0)
    x, y, w = TrainingSet(ims[:1], labs[:1], p)[0]
    np.testing.assert_allclose(x.numpy(), percentile_normalize(ims[0]), atol=1e-5)
    np.testing.assert_array_equal(y[0].numpy(), (labs[0] > 0).astype(np.float32))
    np.testing.assert_array_equal(y[1].numpy(), boundary_target(labs[0], 2.0))
    np.testing.assert_allclose(y[2].numpy(), centre_heatmap(labs[0], 2.0), atol=1e-6)
    assert (w.numpy() == 1).all()


def test_augmented_samples_are_consistent_and_reproducible(unet_data, unet_tiny):
    ims, labs = unet_data
    p = dict(unet_tiny, weight_map=True)
    ds = TrainingSet(ims, labs, p)
    for i in range(8):
        x, y, w = ds[i]
        assert x.shape == (1, 64, 64) and y.shape == (3, 64, 64) and w.shape == (1, 64, 64)
        fg, bd, ct = y.numpy()
        peaks = ct == 1.0
        assert fg[peaks].all()  # every centre inside the crop lies on the foreground
        assert (w.numpy() >= 0.5).all() and torch.isfinite(x).all()
    a = ds[3]
    ds2 = TrainingSet(ims, labs, p)
    assert all(torch.equal(u, v) for u, v in zip(a, ds2[3]))
    ds2.set_epoch(1)
    assert not torch.equal(a[0], ds2[3][0])


def test_losses(unet_tiny):
    t = torch.zeros(1, 3, 16, 16)
    t[:, 0, 4:12, 4:12] = 1
    t[:, 2, 8, 8] = 1
    good = (t * 2 - 1) * 8
    bad = -good
    lg, parts = unet_loss(good, t, params=unet_tiny)
    lb, _ = unet_loss(bad, t, params=unet_tiny)
    assert lg < 0.1 < lb and set(parts) == set(HEADS)
    assert focal_loss(good[:, 2], t[:, 2]) < focal_loss(bad[:, 2], t[:, 2])
    wmap = torch.ones(1, 1, 16, 16) * 5
    assert unet_loss(bad, t, wmap, unet_tiny)[1]["foreground"] > unet_loss(bad, t, None, unet_tiny)[1]["foreground"]


def test_few_steps_of_training_lower_the_loss(unet_trained, unet_data, caplog, unet_tiny):
    model, history = unet_trained
    assert len(history) == unet_tiny["epochs"]
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]
    assert {"val_dice", "val_f1_50", "val_ap", "seconds", "lr"} <= set(history[-1])
    # on a fixed batch, in eval mode: the trained model beats the same model untrained
    ims, labs = unet_data
    x, y, _ = next(iter(torch.utils.data.DataLoader(TrainingSet(ims[4:], labs[4:], unet_tiny), batch_size=4)))
    torch.manual_seed(unet_tiny["seed"])
    fresh = build_unet(unet_tiny["encoder_name"], 5, unet_tiny["decoder_channels"]).eval()
    with torch.no_grad():
        before = unet_loss(fresh(x), y, params=unet_tiny)[0]
        after = unet_loss(model(x), y, params=unet_tiny)[0]
    assert after < 0.8 * before


def test_training_continues_from_initial_weights_and_stops_when_asked(unet_trained, unet_data, unet_tiny):
    """``initial_weights`` starts from a trained model (its first epoch's loss is the trained level, not
    the untrained one); ``on_epoch_end`` returning True ends training after that epoch."""
    model, history = unet_trained
    ims, labs = unet_data
    p = dict(unet_tiny, epochs=4, samples_per_epoch=8)
    seen = []
    _, h_cont = train_unet(ims[:4], labs[:4], p, initial_weights=model.state_dict(),
                           on_epoch_end=lambda rec: seen.append(rec["epoch"]) or rec["epoch"] == 2)
    assert seen == [1, 2] and [r["epoch"] for r in h_cont] == [1, 2]
    _, h_fresh = train_unet(ims[:4], labs[:4], dict(p, epochs=1))
    assert h_cont[0]["loss"] < 0.6 * h_fresh[0]["loss"]
    assert h_cont[0]["loss"] < 1.5 * history[-1]["loss"]


def test_checkpoint_round_trip_restores_identical_outputs(unet_trained, unet_data, tmp_path, unet_tiny):
    model, history = unet_trained
    meta = checkpoint_meta(unet_tiny, data_hash="0123abcd", history=history, fold=1)
    path = tmp_path / "models" / "unet.pt"
    save_checkpoint(path, model, meta)
    assert os.listdir(path.parent) == ["unet.pt"]  # no temporary left behind
    loaded, meta2 = load_checkpoint(path, "cpu")
    for key in ("arch", "heads", "channels", "normalization", "pixel_size", "data_hash",
                "code_version", "params"):
        assert key in meta2
    assert meta2["arch"]["encoder_name"] == "resnet18" and meta2["arch"]["in_channels"] == 1
    assert meta2["data_hash"] == "0123abcd" and meta2["fold"] == 1 and meta2["history"] == history
    assert meta2["heads"] == list(HEADS) and "state_dict" not in meta2
    img = unet_data[0][5]
    a = predict_maps(model, meta, img, 64, 16)
    b = predict_maps(loaded, meta2, img, 64, 16)
    assert a.shape == (3, 96, 96) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    torch.save({"format": "other"}, tmp_path / "bad.pt")
    with pytest.raises(ValueError):
        load_checkpoint(tmp_path / "bad.pt")
    with pytest.raises(ValueError):
        save_checkpoint(tmp_path / "x.pt", model, {"arch": {}})


def _matched_fraction(ref, other, thresh=0.9):
    """Fraction of objects of ``ref`` with an object of ``other`` at IoU >= thresh."""
    ids = np.unique(ref[ref > 0])
    hits = 0
    for i in ids:
        a = ref == i
        for j in np.unique(other[a]):
            if j and (a & (other == j)).sum() / (a | (other == j)).sum() >= thresh:
                hits += 1
                break
    return hits / max(len(ids), 1)


def test_tiled_prediction_matches_untiled(unet_trained, unet_tiny, blobs):
    """A 192 x 192 field in 64 px tiles with a 48 px halo vs one 192 px tile (same 32 px
    reflect padding at the field edge). The U-Net's receptive field is larger than the halo, so
    maps differ slightly near tile borders; measured here: max |diff| ~0.002-0.005, mean ~1e-4
    (with a 32 px halo max |diff| ~0.015, enough to flip one watershed split of 36 on one CPU and not on another).
    Tolerances: max |diff| < 0.05 and mean |diff| < 0.002 on every map; >= 99% of the untiled
    instances are matched at IoU >= 0.9 by the tiled ones (and vice versa)."""
    model, _ = unet_trained
    meta = checkpoint_meta(unet_tiny)
    img, _ = blobs(100, (192, 192), 40)
    full = predict_maps(model, meta, img, None, 32)
    tiled = predict_maps(model, meta, img, 64, 48, batch_size=4)
    diff = np.abs(full - tiled)
    assert diff.max() < 0.05, diff.max(axis=(1, 2))
    assert diff.mean(axis=(1, 2)).max() < 0.002
    for mode in ("boundary", "centre"):
        a = instances_from_maps(full, mode)
        b = instances_from_maps(tiled, mode)
        assert a.max() >= 10  # the model finds objects: the comparison is not vacuous
        assert _matched_fraction(a, b) >= 0.99 and _matched_fraction(b, a) >= 0.99


def test_predict_maps_channels_and_array_like_output(unet_trained, unet_tiny, blobs):
    zarr = pytest.importorskip("zarr")
    model, _ = unet_trained
    meta = checkpoint_meta(unet_tiny)
    img, _ = blobs(7, (80, 72))
    multi = np.concatenate([np.zeros_like(img), img, img // 3])  # nuclei in channel 1
    ref = predict_maps(model, meta, img[0], 32, 16)  # 2-D input
    got = predict_maps(model, meta, multi, 32, 16, channels=[1])
    np.testing.assert_array_equal(ref, got)
    out = zarr.create_array(store=zarr.storage.MemoryStore(), shape=(3, 80, 72),
                            chunks=(3, 32, 32), dtype="float32")
    predict_maps(model, meta, multi, 32, 16, out=out, channels=[1])
    np.testing.assert_array_equal(out[:], ref)
    with pytest.raises(ValueError):
        predict_maps(model, meta, multi, 32, 16, channels=[0, 1])


def test_validation_uses_the_configured_watershed(unet_trained, unet_data, unet_tiny, monkeypatch):
    """Fold validation segments with ``val_watershed`` (the config's watershed), not fixed markers."""
    import plateseg.pipeline.validation as validation
    from plateseg.pipeline.validation import evaluate_maps

    model, _ = unet_trained
    ims, labs = unet_data
    maps = predict_maps(model, checkpoint_meta(unet_tiny), ims[4], 64, 16)
    a = evaluate_maps(maps, labs[4], {"mode": "boundary", "min_area": 10})
    b = evaluate_maps(maps, labs[4], {"mode": "centre", "peak_threshold": 1.01, "keep_unseeded": False})
    assert a["dice"] == b["dice"] and a["n_pred"] > 0 == b["n_pred"]
    seen = []
    real = validation.evaluate_maps
    monkeypatch.setattr(validation, "evaluate_maps", lambda m, lab, ws=None: seen.append(ws) or real(m, lab, ws))
    ws = {"mode": "centre", "min_area": 30}
    validation.validate_unet(model, checkpoint_meta(unet_tiny), (ims[4:], labs[4:]),
                               UNetParams.coerce(dict(unet_tiny, val_watershed=ws)), "cpu")
    assert seen == [ws, ws]
    assert "val_mode" not in UNetParams.__dataclass_fields__
