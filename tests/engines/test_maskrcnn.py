import logging
import os

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import ndimage as ndi
from skimage.draw import disk

from plateseg.engines.maskrcnn import (TABLE_COLUMNS, MaskRCNNParams, TrainingSet, _tiled_instances,
                               build_maskrcnn, centroids, checkpoint_meta, instance_targets,
                               load_checkpoint, predict_instances, relabel_instances,
                               resolve_overlaps, save_checkpoint, train_maskrcnn)
from plateseg.evaluation.metrics import matching
from plateseg.io.synth import synth_field
from plateseg.tiling.grid import owned_by_tile, tile_grid

torch.set_num_threads(1)

# a full-depth resnet18-FPN with thin heads and few proposals: ~0.3 s per step of 2 crops of 64 px
TINY = dict(fpn_channels=32, box_head_dim=128, mask_head_channels=32, crop_size=64, batch_size=2,
            epochs=3, samples_per_epoch=4, lr=1e-3, warmup_steps=2, scale_range=(1.0, 1.0),
            rpn_batch_size_per_image=64, box_batch_size_per_image=64,
            rpn_pre_nms_top_n_train=300, rpn_post_nms_top_n_train=300,
            rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=300, box_detections_per_img=100,
            val_tile_size=48, val_halo=16, seed=0)


def blobs(seed, shape=(96, 96), n=8):
    """uint16 image of bright, non-overlapping discs on a noisy background, and its labels."""
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, np.uint16)
    img = np.zeros(shape)
    k = 1
    for _ in range(n * 10):
        if k > n:
            break
        r = rng.uniform(5, 9)
        cy, cx = rng.uniform(r, shape[0] - r), rng.uniform(r, shape[1] - r)
        rr, cc = disk((cy, cx), r, shape=shape)
        if (lab[rr, cc] > 0).any():
            continue
        lab[rr, cc] = k
        img[rr, cc] = rng.uniform(0.5, 1.0)
        k += 1
    img = img + rng.normal(0, 0.05, shape)
    return (img * 1000 + 100).clip(0).astype(np.uint16)[None], lab


@pytest.fixture(scope="module")
def data():
    ims, labs = zip(*[blobs(i) for i in range(5)])
    return list(ims), list(labs)


@pytest.fixture(scope="module")
def trained(data):
    ims, labs = data
    return train_maskrcnn(ims[:4], labs[:4], TINY, val=(ims[4:], labs[4:]))


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
def test_model_is_trainable_from_scratch_and_keeps_native_resolution(norm, cls):
    from torchvision.ops import FrozenBatchNorm2d

    m = build_maskrcnn(dict(TINY, norm=norm, channels=(0, 1)))
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


def test_instance_targets_and_augmented_crops(data):
    ims, labs = data
    t = instance_targets(labs[0])
    n = int(labs[0].max())
    assert t["boxes"].shape == (n, 4) and t["masks"].shape == (n, 96, 96)
    for box, mask in zip(t["boxes"].numpy(), t["masks"].numpy()):
        ys, xs = np.nonzero(mask)
        assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    empty = instance_targets(np.zeros((8, 8), int))
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)
    assert empty["masks"].shape == (0, 8, 8)

    p = dict(TINY, samples_per_epoch=6, scale_range=(0.8, 1.25), intensity_jitter=0.0)
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


# --------------------------------------------------------------------------- overlaps

def test_resolve_overlaps_gives_contested_pixels_to_nearest_centroid():
    shape = (40, 50)
    discs = [((15, 15), 10), ((18, 28), 9), ((25, 20), 8), ((30, 40), 6), ((8, 40), 4)]
    masks = np.zeros((len(discs), *shape), bool)
    for m, (c, r) in zip(masks, discs):
        m[disk(c, r, shape=shape)] = True
    cover = masks.sum(0)
    assert (cover >= 2).sum() > 100 and (cover == 3).sum() > 10  # pairs and a triple overlap
    yy, xx = np.indices(shape)
    cen = np.array([[yy[m].mean(), xx[m].mean()] for m in masks])
    lab = resolve_overlaps(masks)
    assert lab.dtype == np.uint32 and lab.shape == shape
    # brute force, pixel by pixel
    d2 = (yy[None] - cen[:, 0, None, None]) ** 2 + (xx[None] - cen[:, 1, None, None]) ** 2
    d2 = np.where(masks, d2, np.inf)
    expected = np.where(cover > 0, np.argmin(d2, axis=0) + 1, 0)
    assert np.array_equal(lab, expected)
    contested = cover >= 2
    for y, x in zip(*np.nonzero(contested)):
        covering = np.flatnonzero(masks[:, y, x])
        dist = np.hypot(cen[covering, 0] - y, cen[covering, 1] - x)
        assert lab[y, x] - 1 in covering[dist == dist.min()]
    assert np.array_equal(lab[cover == 1], (np.argmax(masks, axis=0) + 1)[cover == 1])
    assert (lab[cover == 0] == 0).all()
    # given centroids are used as they are (here: swap the first two)
    swapped = cen[[1, 0, 2, 3, 4]]
    lab2 = resolve_overlaps(masks, swapped)
    d2s = np.where(masks, (yy[None] - swapped[:, 0, None, None]) ** 2
                   + (xx[None] - swapped[:, 1, None, None]) ** 2, np.inf)
    assert np.array_equal(lab2, np.where(cover > 0, np.argmin(d2s, axis=0) + 1, 0))


def test_centroids_serve_as_watershed_markers():
    from plateseg.segment.watershed import instances_from_maps

    lab = np.zeros((30, 30), np.uint32)
    lab[disk((10, 10), 6)] = 1
    lab[disk((10, 20), 6)] = 2  # touching discs: one foreground component
    c = centroids(lab)
    assert c.shape == (2, 2) and np.allclose(c[0], (10, 10 - 0.7), atol=1.0)
    maps = np.stack([(lab > 0).astype(np.float32), np.zeros((30, 30)), np.zeros((30, 30))])
    out = instances_from_maps(maps, mode="points", points=c, min_area=1)
    assert out.max() == 2 and matching(lab, out, 0.8)["tp"] == 2


# ------------------------------------------------------------------- tiling, perfect detector

def _coords_reader(shape):
    """read_fn whose "image" is the pixel coordinates, so a fake detector knows its window."""
    def read_fn(sl):
        return np.stack(np.mgrid[sl]).astype(np.float32)
    return read_fn


def _perfect_detector(masks, scores):
    """detect_fn returning the true masks visible in each read window (a perfect detector)."""
    boxes = [ndi.find_objects(m.astype(np.uint8))[0] for m in masks]
    calls = []

    def detect_fn(windows):
        res = []
        for win in windows:
            y0, x0 = int(win[0, 0, 0]), int(win[1, 0, 0])
            h, w = win.shape[-2:]
            calls.append((y0, x0, h, w))
            keep = [i for i, b in enumerate(boxes) if b[0].start < y0 + h and b[0].stop > y0
                    and b[1].start < x0 + w and b[1].stop > x0]
            keep.sort(key=lambda i: -scores[i])
            res.append((masks[keep][:, y0:y0 + h, x0:x0 + w].reshape(len(keep), h, w),
                        scores[keep]))
        return res
    detect_fn.calls = calls
    return detect_fn


@pytest.fixture(scope="module")
def field():
    """A dense synthetic 192x192 field (35 nuclei, some touching); true masks dilated by 2 px so
    that neighbours overlap."""
    _, lab = synth_field(np.random.default_rng(0), shape=(192, 192), density=4)
    ids = np.unique(lab)[1:]
    masks = np.stack([ndi.binary_dilation(lab == i, iterations=2) for i in ids])
    scores = np.random.default_rng(1).uniform(0.5, 1.0, len(ids))
    yy, xx = np.indices(lab.shape)
    cen = np.array([[yy[m].mean(), xx[m].mean()] for m in masks])
    return lab, masks, scores, cen


@pytest.mark.parametrize("tile,halo,batch", [(64, 36, 1), ((48, 80), (34, 40), 3)])
def test_tiled_ownership_with_perfect_detector_matches_whole_field(field, tile, halo, batch):
    lab, masks, scores, cen = field
    shape = lab.shape
    n = len(masks)
    extent = max(max(s.stop - s.start for s in ndi.find_objects(m.astype(np.uint8))[0])
                 for m in masks)
    assert extent <= np.min(halo)  # so no owned object is cut by its own halo
    tiles = tile_grid(shape, tile, halo)
    owner = np.array([next(t.number for t in tiles if owned_by_tile(c[None], t)[0]) for c in cen])
    # the case this test is about: objects that cross core seams, and objects cut by the outer
    # edge of a read window of a tile that does not own them
    crossing = sum(len({t.number for t in tiles
                        if m[t.core].any()}) > 1 for m in masks)
    cut_elsewhere = 0
    for i, m in enumerate(masks):
        for t in tiles:
            if t.number != owner[i] and m[t.read].any() and m[t.read].sum() < m.sum():
                cut_elsewhere += 1
    assert crossing >= 5 and cut_elsewhere >= 5

    detect = _perfect_detector(masks, scores)
    written = []
    out, table = _tiled_instances(
        detect, _coords_reader(shape), shape, tile, halo, batch,
        on_tile_written=lambda t, rows: written.append((t.number, len(rows))))
    assert [w[0] for w in written] == list(range(len(tiles)))
    assert sum(w[1] for w in written) == len(table)
    assert list(table.columns) == list(TABLE_COLUMNS)
    # every true object exactly once, by the tile that owns it
    assert len(table) == n and table["label"].is_unique
    assert not table["cut_by_halo"].any()
    true_of_row = [int(np.argmin(np.hypot(*(cen - (r.centroid_y, r.centroid_x)).T)))
                   for r in table.itertuples()]
    assert sorted(true_of_row) == list(range(n))
    assert np.allclose(table[["centroid_y", "centroid_x"]].to_numpy(), cen[true_of_row])
    assert (table["tile"].to_numpy() == owner[true_of_row]).all()
    assert np.allclose(table["score"].to_numpy(), scores[true_of_row])
    assert (table["area"].to_numpy() == masks[true_of_row].sum(axis=(1, 2))).all()
    # the stitched labels equal the whole field's overlap resolution (pixels whose nearest
    # centroids tie exactly may go either way: the order of the masks differs)
    whole = resolve_overlaps(masks, cen)
    lut = np.zeros(int(out.max()) + 1, np.int64)
    lut[table["label"].to_numpy()] = np.array(true_of_row) + 1
    yy, xx = np.indices(shape)
    d2 = np.where(masks, (yy[None] - cen[:, 0, None, None]) ** 2
                  + (xx[None] - cen[:, 1, None, None]) ** 2, np.inf)
    srt = np.sort(d2, axis=0)
    tie = np.isfinite(srt[1]) & (srt[0] == srt[1])
    assert tie.sum() < 20
    assert np.array_equal(lut[out][~tie], whole[~tie])
    assert (out > 0).sum() == masks.any(0).sum()


def test_tiled_instances_resume(field):
    lab, masks, scores, cen = field
    shape = lab.shape
    args = (_coords_reader(shape), shape, 64, 36, 2)
    full, full_table = _tiled_instances(_perfect_detector(masks, scores), *args)
    tiles = tile_grid(shape, 64, 36)
    # a job killed after writing 5 cores: those cores and their rows are on disk
    k = 5
    out = np.zeros(shape, np.uint32)
    for t in tiles[:k]:
        out[t.core] = full[t.core]
    rows_done = full_table[full_table["tile"] < k]
    detect = _perfect_detector(masks, scores)
    resumed, table = _tiled_instances(detect, *args, out=out, start=k)
    assert np.array_equal(resumed, full)
    both = pd.concat([rows_done, table], ignore_index=True)
    pd.testing.assert_frame_equal(both, full_table)
    assert (table["tile"] >= k).all()
    # only tiles whose instances reach cores k.. are detected again: all but tile 0
    assert len(detect.calls) == len(tiles) - 1


def test_objects_larger_than_the_halo_are_reported(caplog):
    shape = (64, 64)
    masks = np.zeros((1, *shape), bool)
    masks[0, 10:20, 5:60] = True  # 55 px long, halo 8: cut by its owner's halo
    detect = _perfect_detector(masks, np.array([0.9]))
    with caplog.at_level(logging.WARNING, logger="plateseg.engines.maskrcnn"):
        out, table = _tiled_instances(detect, _coords_reader(shape), shape, 32, 8)
    # both tiles see a cut piece whose centroid lies in their own core: the object is reported
    # (flagged and logged) rather than silently cut - the halo must exceed the largest object
    assert len(table) >= 1 and table["cut_by_halo"].all()
    assert "halo's outer edge" in caplog.text


# --------------------------------------------------------------------------- training and inference

def test_few_steps_of_training_lower_the_loss(trained, caplog):
    model, history = trained
    assert len(history) == 3
    assert history[-1]["loss"] < 0.7 * history[0]["loss"]
    for rec in history:
        for k in ("loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness",
                  "loss_rpn_box_reg", "lr", "seconds", "val_f1_50", "val_ap", "val_n_pred"):
            assert k in rec and np.isfinite(rec[k])
    assert not model.training


def test_training_logs_and_is_deterministic_on_cpu(data, caplog):
    ims, labs = data
    p = dict(TINY, epochs=1, samples_per_epoch=2)
    with caplog.at_level(logging.INFO, logger="plateseg.engines.maskrcnn"):
        m1, h1 = train_maskrcnn(ims[:2], labs[:2], p)
    assert "epoch 1/1 loss" in caplog.text
    m2, h2 = train_maskrcnn(ims[:2], labs[:2], p)
    assert h1[0]["loss"] == h2[0]["loss"]
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)


def test_training_continues_from_initial_weights_and_stops_when_asked(trained, data):
    """``initial_weights`` is where training starts (at a vanishing learning rate the weights stay there,
    far from a fresh start's); ``on_epoch_end`` returning True ends training after that epoch."""
    model, _ = trained
    ims, labs = data
    p = dict(TINY, epochs=3, samples_per_epoch=2, lr=1e-12)
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    seen = []
    cont, h = train_maskrcnn(ims[:2], labs[:2], p, initial_weights=start,
                             on_epoch_end=lambda rec: seen.append(rec["epoch"]) or True)
    assert seen == [1] and len(h) == 1
    fresh, _ = train_maskrcnn(ims[:2], labs[:2], dict(p, epochs=1))
    key = "backbone.body.conv1.weight"
    assert torch.allclose(cont.state_dict()[key], start[key], atol=1e-6)
    assert not torch.allclose(fresh.state_dict()[key], start[key], atol=1e-3)


def test_checkpoint_round_trip_restores_identical_outputs(trained, data, tmp_path):
    model, history = trained
    ims, _ = data
    meta = checkpoint_meta(TINY, data_hash="abc123", history=history, fold=1)
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


def test_predict_instances_outputs_and_ownership(trained, data):
    model, _ = trained
    ims, _ = data
    meta = checkpoint_meta(TINY)
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


def test_real_model_tiles_take_each_whole_field_instance_once(trained, data):
    """With a halo covering the whole field every tile sees the same input, so each tile's
    detections equal the whole-field detections: ownership must keep each of them exactly once."""
    model, _ = trained
    ims, _ = data
    meta = checkpoint_meta(TINY)
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


def test_predict_instances_resume_with_on_disk_style_output(trained, data):
    model, _ = trained
    ims, _ = data
    meta = checkpoint_meta(TINY)
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
def well(trained, data, tmp_path_factory):
    """A well store of two fields (a 2x2 mosaic of test images, and one image) and a checkpoint."""
    from plateseg.io.ngff import write_well_image

    d = tmp_path_factory.mktemp("maskrcnn_well")
    model, history = trained
    save_checkpoint(d / "model.pt", model, checkpoint_meta(TINY, history=history))
    ims, _ = data
    mosaic = np.concatenate([np.concatenate(ims[0:2], 2), np.concatenate(ims[2:4], 2)], 1)
    write_well_image(d / "image.zarr", {1: mosaic, 2: ims[4]}, ["DNA"], 64, 1.0)
    return d


def test_well_instances_equal_field_prediction_and_resume_after_a_kill(well):
    """infer_well_instances: the labels and table of predict_instances per field, also when killed and resumed."""
    from plateseg.pipeline.infer import infer_well_instances, partial_path, read_progress
    from plateseg.io.files import read_table
    from plateseg.io.ngff import open_field, read_labels

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
def test_trained_model_tiled_inference_matches_whole_field(data):
    ims, labs = data
    model, history = train_maskrcnn(ims[:4], labs[:4], dict(TINY, crop_size=96, epochs=30,
                                                             samples_per_epoch=8))
    meta = checkpoint_meta(TINY)
    whole, _ = predict_instances(model, meta, ims[4], tile_size=None, halo=0)
    tiled, table = predict_instances(model, meta, ims[4], tile_size=48, halo=24)
    assert matching(labs[4], whole, 0.5)["f1"] >= 0.9
    m = matching(whole, tiled, 0.5)
    assert m["fp"] == 0 and m["fn"] == 0 and m["mean_matched_iou"] > 0.9
