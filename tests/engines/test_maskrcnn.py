import os

import numpy as np
import pandas as pd
import pytest
import torch

from plateseg.engines.maskrcnn import (MaskRCNNParams, TrainingSet, build_maskrcnn, checkpoint_meta,
                                       instance_targets, load_checkpoint, predict_instances,
                                       save_checkpoint, train_maskrcnn)
from plateseg.evaluation.metrics import matching
from plateseg.labels import relabel_instances
from plateseg.tiling.grid import owned_by_tile, tile_grid
from plateseg.tiling.instances import TABLE_COLUMNS


# --------------------------------------------------------------------------- model and data

def test_params():
    p = MaskRCNNParams.coerce({"epochs": 3, "aspect_ratios": [0.5, 1, 2], "channels": [1, 0]})
    assert p.epochs == 3 and p.channels == (1, 0) and p.aspect_ratios == (0.5, 1, 2)
    with pytest.raises(TypeError):
        MaskRCNNParams.coerce({"epoch": 3})
    with pytest.raises(ValueError):
        MaskRCNNParams.coerce({"anchor_sizes": [8, 16, 32]})  # one per FPN level
    with pytest.raises(ValueError):
        MaskRCNNParams.coerce({"norm": "frozen"})


@pytest.mark.parametrize("norm,cls", [("batch", torch.nn.BatchNorm2d),
                                      ("group", torch.nn.GroupNorm)])
def test_model_is_trainable_from_scratch_and_keeps_native_resolution(norm, cls, maskrcnn_tiny):
    from torchvision.ops import FrozenBatchNorm2d

    m = build_maskrcnn(dict(maskrcnn_tiny, norm=norm, channels=(0, 1)))
    body = m.backbone.body
    assert not any(isinstance(x, FrozenBatchNorm2d) for x in m.modules())
    assert isinstance(body.bn1, cls) and isinstance(body.layer4[0].bn1, cls)
    assert all(q.requires_grad for q in m.parameters())
    assert body.conv1.in_channels == 2
    assert m.rpn.anchor_generator.sizes == ((8,), (16,), (32,), (64,), (128,))
    assert m.rpn.anchor_generator.num_anchors_per_location() == [3] * 5
    assert m.roi_heads.detections_per_img == 100
    # the transform pads to a multiple of 32 but never rescales
    x = torch.rand(2, 50, 70)
    images, _ = m.eval().transform([x])
    assert images.image_sizes == [(50, 70)] and tuple(images.tensors.shape[-2:]) == (64, 96)
    assert torch.equal(images.tensors[0, :, :50, :70], x)


def test_instance_targets_and_augmented_crops(maskrcnn_data, maskrcnn_tiny):
    ims, labs = maskrcnn_data
    t = instance_targets(labs[0])
    n = int(labs[0].max())
    assert t["boxes"].shape == (n, 4) and t["masks"].shape == (n, 96, 96)
    for box, mask in zip(t["boxes"].numpy(), t["masks"].numpy()):
        ys, xs = np.nonzero(mask)
        assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    empty = instance_targets(np.zeros((8, 8), int))
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)
    assert empty["masks"].shape == (0, 8, 8)

    p = dict(maskrcnn_tiny, samples_per_epoch=6, scale_range=(0.8, 1.25), intensity_jitter=0.0)
    ds = TrainingSet(ims, labs, p)
    ds.set_epoch(1)
    x, tgt = ds[3]
    x2, tgt2 = ds[3]
    assert x.shape == (1, 64, 64) and torch.equal(x, x2)
    assert torch.equal(tgt["masks"], tgt2["masks"])
    assert tgt["boxes"].dtype == torch.float32 and tgt["labels"].dtype == torch.int64
    # image and targets stay aligned through zoom, crop, rotation and flip: discs are bright
    for i in range(len(ds)):
        x, tgt = ds[i]
        fg = tgt["masks"].sum(0).numpy() > 0
        if fg.sum() > 50:
            assert x[0].numpy()[fg].mean() > x[0].numpy()[~fg].mean() + 0.3
    # a crop of background only has empty targets
    bg_img = np.full((1, 100, 100), 100, np.uint16)
    x, tgt = TrainingSet([bg_img], [np.zeros((100, 100), int)], p)[0]
    assert tgt["boxes"].shape == (0, 4) and tgt["masks"].shape == (0, 64, 64)


# --------------------------------------------------------------------------- training and inference

def test_few_steps_of_training_lower_the_loss(maskrcnn_trained, caplog):
    model, history = maskrcnn_trained
    assert len(history) == 3
    assert history[-1]["loss"] < 0.7 * history[0]["loss"]
    for rec in history:
        for k in ("loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness",
                  "loss_rpn_box_reg", "lr", "seconds", "val_f1_50", "val_ap", "val_n_pred"):
            assert k in rec and np.isfinite(rec[k])
    assert not model.training


def test_training_continues_from_initial_weights_and_stops_when_asked(maskrcnn_trained, maskrcnn_data, maskrcnn_tiny):
    """``initial_weights`` is where training starts (at a vanishing learning rate the weights stay there,
    far from a fresh start's); ``on_epoch_end`` returning True ends training after that epoch."""
    model, _ = maskrcnn_trained
    ims, labs = maskrcnn_data
    p = dict(maskrcnn_tiny, epochs=3, samples_per_epoch=2, lr=1e-12)
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    seen = []
    cont, h = train_maskrcnn(ims[:2], labs[:2], p, initial_weights=start,
                             on_epoch_end=lambda rec: seen.append(rec["epoch"]) or True)
    assert seen == [1] and len(h) == 1
    fresh, _ = train_maskrcnn(ims[:2], labs[:2], dict(p, epochs=1))
    key = "backbone.body.conv1.weight"
    assert torch.allclose(cont.state_dict()[key], start[key], atol=1e-6)
    assert not torch.allclose(fresh.state_dict()[key], start[key], atol=1e-3)


def test_validation_scores_with_the_gt_tie_rule(maskrcnn_trained, maskrcnn_data, maskrcnn_tiny, monkeypatch):
    """Fold validation matches with ``tie="gt"`` (a match needs IoU > 0.5), as every other score."""
    import plateseg.pipeline.validation as validation

    model, _ = maskrcnn_trained
    ims, labs = maskrcnn_data
    ties = []
    for name in ("matching", "dsb_map"):
        real = getattr(validation, name)
        monkeypatch.setattr(validation, name, lambda *a, _real=real, **kw: ties.append(kw.get("tie")) or _real(*a, **kw))
    p = MaskRCNNParams.coerce(dict(maskrcnn_tiny, val_score_threshold=0.05))
    res = validation.validate_maskrcnn(model, checkpoint_meta(p), (ims[4:], labs[4:]), p, "cpu")
    assert ties == ["gt", "gt"] and 0 <= res["val_f1_50"] <= 1


def test_checkpoint_round_trip_restores_identical_outputs(maskrcnn_trained, maskrcnn_data, tmp_path, maskrcnn_tiny):
    model, history = maskrcnn_trained
    ims, _ = maskrcnn_data
    meta = checkpoint_meta(maskrcnn_tiny, data_hash="abc123", history=history, fold=1)
    path = tmp_path / "sub" / "maskrcnn.pt"
    save_checkpoint(path, model, meta)
    assert path.exists() and not list(path.parent.glob(".*.tmp"))
    model2, meta2 = load_checkpoint(path, device="cpu")
    for k in ("arch", "channels", "normalization", "data_hash", "code_version", "params", "fold"):
        assert meta2[k] == meta[k]
    assert meta2["history"][-1]["loss"] == history[-1]["loss"]
    kw = dict(tile_size=48, halo=16, score_threshold=0.05)
    lab1, t1 = predict_instances(model, meta, ims[4], **kw)
    lab2, t2 = predict_instances(model2, meta2, ims[4], **kw)
    assert len(t1) > 0  # low threshold: an under-trained model still proposes something
    assert np.array_equal(lab1, lab2)
    pd.testing.assert_frame_equal(t1, t2)
    with pytest.raises(ValueError):
        save_checkpoint(tmp_path / "bad.pt", model, {"arch": {}})


def test_predict_instances_outputs_and_ownership(maskrcnn_trained, maskrcnn_data, maskrcnn_tiny):
    model, _ = maskrcnn_trained
    ims, _ = maskrcnn_data
    meta = checkpoint_meta(maskrcnn_tiny)
    lab, table = predict_instances(model, meta, ims[4], tile_size=48, halo=16, batch_size=2,
                                   score_threshold=0.05)
    assert lab.dtype == np.uint32 and lab.shape == (96, 96)
    assert list(table.columns) == list(TABLE_COLUMNS)
    # numbered 1..N in tile order, one row per label present
    assert table["label"].tolist() == list(range(1, len(table) + 1))
    assert table["tile"].is_monotonic_increasing
    assert set(np.unique(lab[lab > 0]).tolist()) == set(table["label"])
    tiles = tile_grid((96, 96), 48, 16)
    for r in table.itertuples():
        assert owned_by_tile([[r.centroid_y, r.centroid_x]], tiles[r.tile])[0]
        assert r.score >= 0.05 and r.y1 > r.y0 and r.x1 > r.x0
    # a 2-D image and a wrong channel selection
    lab2, _ = predict_instances(model, meta, ims[4][0], tile_size=48, halo=16, score_threshold=0.05)
    assert np.array_equal(lab2, lab)
    with pytest.raises(ValueError):
        predict_instances(model, meta, ims[4], channels=[0, 1])
    with pytest.raises(ValueError):
        predict_instances(model, meta, ims[4], start=1, relabel=True)


def test_masks_kept_to_their_boxes_are_torchvision_pasted_masks(maskrcnn_trained, maskrcnn_data):
    """Inference keeps each mask to its box (no image-sized map per detection); the pixels are torchvision's."""
    from plateseg.engines.maskrcnn import _box_masks, _boxed_detections
    from plateseg.engines.normalize import percentile_normalize
    from plateseg.tiling.instances import _window_detections

    model, _ = maskrcnn_trained
    model.eval()
    saved, model.roi_heads.score_thresh = model.roi_heads.score_thresh, 0.0  # every detection of the tiny model
    # the model's input as inference makes it (percentile-normalised): raw uint16 counts are far outside what it
    # was trained on, and what it makes of them depends on the CPU's kernels (0 detections on one machine)
    x = torch.from_numpy(percentile_normalize(maskrcnn_data[0][4]))[:, 5:91, 3:80]
    with torch.inference_mode():
        full = model([x])[0]
        boxes, scores, probs = _boxed_detections(model, [x])[0]
    model.roi_heads.score_thresh = saved
    assert len(full["scores"]) >= 3 and torch.equal(full["boxes"], boxes) and torch.equal(full["scores"], scores)
    boxed = _box_masks(probs, boxes, x.shape[-2:], 0.5)
    assert all(c.shape == (b[2] - b[0], b[3] - b[1]) for b, c in zip(boxed.boxes, boxed.crops))
    assert sum(c.size for c in boxed.crops) < len(boxed.crops) * x.shape[-1] * x.shape[-2] / 2
    pasted = list(_window_detections((full["masks"][:, 0] > 0.5).numpy(), scores.numpy(), x.shape[-2:]))
    kept = list(_window_detections(boxed, scores.numpy(), x.shape[-2:]))
    assert len(kept) == len(pasted) >= 3
    for a, b in zip(pasted, kept):
        assert a[:5] == b[:5] and np.array_equal(a[5], b[5])


def test_real_model_tiles_take_each_whole_field_instance_once(maskrcnn_trained, maskrcnn_data, maskrcnn_tiny):
    """With a halo covering the whole field every tile sees the same input, so each tile's
    detections equal the whole-field detections: ownership must keep each of them exactly once."""
    model, _ = maskrcnn_trained
    ims, _ = maskrcnn_data
    meta = checkpoint_meta(maskrcnn_tiny)
    kw = dict(score_threshold=0.05, batch_size=1)
    whole, tw = predict_instances(model, meta, ims[4], tile_size=None, halo=0, **kw)
    tiled, tt = predict_instances(model, meta, ims[4], tile_size=48, halo=96, **kw)
    assert len(tw) >= 3 and tt["tile"].nunique() >= 2
    assert len(tt) == len(tw)
    # the same instances (numbered in tile order instead of score order)
    cols = ["score", "y0", "x0", "y1", "x1", "centroid_y", "centroid_x", "area"]
    tw_s = tw.sort_values(["centroid_y", "centroid_x"]).reset_index(drop=True)
    tt_s = tt.sort_values(["centroid_y", "centroid_x"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(tt_s[cols], tw_s[cols])
    lut = np.zeros(len(tt) + 1, np.int64)
    lut[tt_s["label"].to_numpy()] = tw_s["label"].to_numpy()
    assert np.array_equal(lut[tiled], whole)


def test_window_caps_scale_with_area_so_a_crowded_window_keeps_every_object(maskrcnn_trained, maskrcnn_data,
                                                                            maskrcnn_tiny):
    """A 4 x 4 mosaic of one field holds 16 times its objects, more than 10 detections per image (the caps):
    the caps hold per 128 x 128 px of window and proposals are kept by objectness, so one window of the mosaic
    finds each copy's objects as the field alone does (not the 100 best of the window), and the model's own
    caps are restored after."""
    model, _ = maskrcnn_trained
    ims, _ = maskrcnn_data
    meta = checkpoint_meta(dict(maskrcnn_tiny, box_detections_per_img=10))  # the model's own: 100
    kw = dict(tile_size=None, halo=0, batch_size=1, score_threshold=0.3, norm_range=([100.0], [1100.0]))
    _, single = predict_instances(model, meta, ims[4], **kw)
    _, mosaic = predict_instances(model, meta, np.tile(ims[4], (1, 4, 4)), **kw)
    assert len(mosaic) > meta["arch"]["box_detections_per_img"]
    per_copy = mosaic.assign(cy=mosaic["centroid_y"] % 96, cx=mosaic["centroid_x"] % 96)
    # each copy's detections away from the copies' shared borders are the field's own
    inner = lambda t, cy, cx: int(((t[cy] > 16) & (t[cy] < 80) & (t[cx] > 16) & (t[cx] < 80)).sum())
    assert inner(per_copy, "cy", "cx") >= 16 * inner(single, "centroid_y", "centroid_x") - 4
    assert model.rpn._post_nms_top_n["testing"] == 300 and model.roi_heads.detections_per_img == 100
    assert model.rpn.score_thresh == 0.0 and model.roi_heads.score_thresh == 0.05


def test_predict_instances_resume_with_on_disk_style_output(maskrcnn_trained, maskrcnn_data, maskrcnn_tiny):
    model, _ = maskrcnn_trained
    ims, _ = maskrcnn_data
    meta = checkpoint_meta(maskrcnn_tiny)
    kw = dict(tile_size=48, halo=16, score_threshold=0.05, relabel=False)
    parts = {}
    full, _ = predict_instances(model, meta, ims[4], **kw,
                                on_tile_written=lambda t, rows: parts.__setitem__(t.number, rows))
    assert sorted(parts) == [0, 1, 2, 3]
    tiles = tile_grid((96, 96), 48, 16)
    out = np.zeros((96, 96), np.uint32)
    out[tiles[0].core] = full[tiles[0].core]
    resumed, table = predict_instances(model, meta, ims[4], **kw, out=out, start=1)
    assert resumed is out and np.array_equal(out, full)
    pd.testing.assert_frame_equal(table, pd.concat([parts[1], parts[2], parts[3]],
                                                   ignore_index=True))
    # the rule's final step: relabel with the concatenated per-tile rows, here chunk by chunk
    whole_table = pd.concat(parts.values(), ignore_index=True)
    lab, tab = relabel_instances(out, whole_table)
    assert tab["label"].tolist() == list(range(1, len(tab) + 1)) and lab.max() == len(tab)
    chunked = np.zeros_like(out)
    for t in tiles:
        chunked[t.core] = relabel_instances(out[t.core], whole_table, drop_empty=False)[0]
    if len(tab) == len(whole_table):  # no instance lost all its pixels
        assert np.array_equal(chunked, lab)
    lab_ref, tab_ref = predict_instances(model, meta, ims[4], tile_size=48, halo=16,
                                         score_threshold=0.05)
    assert np.array_equal(lab_ref, lab)
    pd.testing.assert_frame_equal(tab_ref, tab)


class Killed(RuntimeError):
    pass


@pytest.fixture(scope="module")
def well(maskrcnn_trained, maskrcnn_data, tmp_path_factory, maskrcnn_tiny):
    """A well store of two fields (a 2x2 mosaic of test images, and one image) and a checkpoint."""
    from plateseg.io.ngff import write_well_image

    d = tmp_path_factory.mktemp("maskrcnn_well")
    model, history = maskrcnn_trained
    save_checkpoint(d / "model.pt", model, checkpoint_meta(maskrcnn_tiny, history=history))
    ims, _ = maskrcnn_data
    mosaic = np.concatenate([np.concatenate(ims[0:2], 2), np.concatenate(ims[2:4], 2)], 1)
    write_well_image(d / "image.zarr", {1: mosaic, 2: ims[4]}, ["DNA"], 64, 1.0)
    return d


def test_well_instances_equal_field_prediction_and_resume_after_a_kill(well):
    """infer_well_instances: the labels and table of predict_instances per field, also when killed and resumed."""
    from plateseg.pipeline.infer import infer_well_instances, partial_path, read_progress
    from plateseg.io.files import read_table
    from plateseg.io.ngff import block_record, open_field, read_labels
    from plateseg.tiling.instances import seam_counts

    kw = dict(tile_size=64, halo=24, batch_size=1, device="cpu", score_threshold=0.05, min_area=3)
    image, ckpt = well / "image.zarr", well / "model.pt"
    infer_well_instances(image, ckpt, well / "full.zarr", well / "full.parquet", **kw)
    assert not partial_path(well / "full.zarr").exists()
    full = read_table(well / "full.parquet")
    assert list(full.columns) == ["field", *TABLE_COLUMNS]
    model, meta = load_checkpoint(ckpt, "cpu")
    for f in (1, 2):
        expect, etab = predict_instances(model, meta, open_field(image, f)[...], 64, 24, 1,
                                         score_threshold=0.05, min_area=3)
        got = read_labels(well / "full.zarr", f)
        assert got.max() > 0 and np.array_equal(got, expect)
        tab = full[full["field"] == f].drop(columns="field").reset_index(drop=True)
        pd.testing.assert_frame_equal(tab, etab)
    assert sorted(full.loc[full["field"] == 1, "tile"].unique()) == list(range(9))  # every tile owns some
    # its tiles are the blocks of the seam QC: field 1 (192 px) in 9 tiles, field 2 (96 px) in 4
    record = block_record(well / "full.zarr")
    assert {f: (r["blocks"], r["objects"]) for f, r in record.items()} == {
        f: (n, int((full["field"] == f).sum())) for f, n in ((1, 9), (2, 4))}
    on_seams = sum(seam_counts(full[full["field"] == f], open_field(image, f).shape[-2:], 64, 24)["on_seams"]
                   for f in (1, 2))
    assert sum(r["on_seams"] for r in record.values()) == on_seams > 0

    def kill(field, tile):
        if field == 1 and tile.number == 4:
            raise Killed

    out, table = well / "resumed.zarr", well / "resumed.parquet"
    with pytest.raises(Killed):
        infer_well_instances(image, ckpt, out, table, **kw, on_tile_written=kill)
    assert not out.exists() and not table.exists()
    assert read_progress(partial_path(out))["next_tile"] == {"1": 5, "2": 0}
    seen = []
    infer_well_instances(image, ckpt, out, table, **kw,
                         on_tile_written=lambda f, t: seen.append((f, t.number)))
    assert seen[0] == (1, 5) and len(seen) == 4 + 4
    for f in (1, 2):
        assert np.array_equal(read_labels(out, f), read_labels(well / "full.zarr", f))
    pd.testing.assert_frame_equal(read_table(table), full)
    assert not partial_path(out).exists()


@pytest.mark.skipif(not os.environ.get("PLATESEG_SLOW"),
                    reason="~50 s of training; run with PLATESEG_SLOW=1")
def test_trained_model_tiled_inference_matches_whole_field(maskrcnn_data, maskrcnn_tiny):
    ims, labs = maskrcnn_data
    model, history = train_maskrcnn(ims[:4], labs[:4], dict(maskrcnn_tiny, crop_size=96, epochs=30,
                                                             samples_per_epoch=8))
    meta = checkpoint_meta(maskrcnn_tiny)
    whole, _ = predict_instances(model, meta, ims[4], tile_size=None, halo=0)
    tiled, table = predict_instances(model, meta, ims[4], tile_size=48, halo=24)
    assert matching(labs[4], whole, 0.5)["f1"] >= 0.9
    m = matching(whole, tiled, 0.5)
    assert m["fp"] == 0 and m["fn"] == 0 and m["mean_matched_iou"] > 0.9
