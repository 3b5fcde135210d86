"""Tiled instances with a perfect fake detector: ownership, stitching, resume, cut objects."""
import logging

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi

from plateseg.io.synth import synth_field
from plateseg.labels import resolve_overlaps
from plateseg.tiling.grid import owned_by_tile, tile_grid
from plateseg.tiling.instances import TABLE_COLUMNS, tiled_instances


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
    out, table = tiled_instances(
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
    full, full_table = tiled_instances(_perfect_detector(masks, scores), *args)
    tiles = tile_grid(shape, 64, 36)
    # a job killed after writing 5 cores: those cores and their rows are on disk
    k = 5
    out = np.zeros(shape, np.uint32)
    for t in tiles[:k]:
        out[t.core] = full[t.core]
    rows_done = full_table[full_table["tile"] < k]
    detect = _perfect_detector(masks, scores)
    resumed, table = tiled_instances(detect, *args, out=out, start=k)
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
    with caplog.at_level(logging.WARNING, logger="plateseg.tiling.instances"):
        out, table = tiled_instances(detect, _coords_reader(shape), shape, 32, 8)
    # both tiles see a cut piece whose centroid lies in their own core: the object is reported
    # (flagged and logged) rather than silently cut - the halo must exceed the largest object
    assert len(table) >= 1 and table["cut_by_halo"].all()
    assert "halo's outer edge" in caplog.text


def _seam_detector(shift):
    """detect_fn of a 64 x 64 field with two objects on the seam x = 32 of tiles of 32 px: a 16 px square that each
    window sees shifted ``shift`` px towards its own side (so the tiles on both sides own it), scored higher from the
    right, and two 10 px squares that touch across the seam (different objects, seen the same from both sides)."""
    def masks_of(x0, h, w):
        side = -1 if x0 == 0 else 1
        m = np.zeros((3, 64, 64), bool)
        m[0, 8:24, 24 + side * shift:40 + side * shift] = True
        m[1, 40:50, 22:32] = True
        m[2, 40:50, 32:42] = True
        return m[:, :h, x0:x0 + w], np.array([0.9 if side < 0 else 0.95, 0.8, 0.8])

    def detect_fn(windows):
        return [masks_of(int(win[1, 0, 0]), *win.shape[-2:]) for win in windows]
    return detect_fn


@pytest.mark.parametrize("threads", [1, 2])
def test_cross_tile_duplicates_keep_the_higher_score_and_spare_touching_neighbours(threads):
    shape = (64, 64)
    args = (_coords_reader(shape), shape, (64, 32), (0, 16))
    both, both_table = tiled_instances(_seam_detector(2), *args)
    # the case this is about: without the rule, the seam square is owned twice and split between two ids
    assert len(both_table) == 4 and len(np.unique(both[8:24, 20:44])) == 3
    out, table = tiled_instances(_seam_detector(2), *args, duplicate_iou=0.5, threads=threads)
    assert len(table) == 3
    square = table[table["y0"] == 8]
    assert len(square) == 1 and square["score"].item() == 0.95 and square["tile"].item() == 1
    assert np.unique(out[8:24, 26:42]).tolist() == [square["label"].item()]  # the kept mask, whole, one id
    assert (out[8:24, 22:26] == 0).all()  # the dropped mask leaves no pixels
    touching = table[table["y0"] == 40]
    assert len(touching) == 2 and set(touching["tile"]) == {0, 1}
    assert all(((out == lab).sum() == 100) for lab in touching["label"])
    # resumed after the first core: the same labels and rows
    resumed = np.zeros(shape, np.uint32)
    resumed[:, :32] = out[:, :32]
    resumed, rest = tiled_instances(_seam_detector(2), *args, duplicate_iou=0.5, out=resumed, start=1)
    assert np.array_equal(resumed, out)
    pd.testing.assert_frame_equal(rest.reset_index(drop=True), table[table["tile"] == 1].reset_index(drop=True))
