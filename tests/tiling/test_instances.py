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
