"""Label utilities: numbering, centroids, size filters, hole filling, overlap resolution."""
import numpy as np
import pandas as pd
import pytest
from skimage.draw import disk

from plateseg.evaluation.metrics import matching
from plateseg.labels import (centroids, dense_labels, fill_label_holes, label_centroids, mask_box,
                             paint_instances, relabel_instances, relabel_sequential, remove_small,
                             resolve_overlaps)
from plateseg.segment.watershed import instances_from_maps


def test_relabel_sequential_is_row_major_and_uint32():
    lab = np.array([[0, 9, 9], [4, 0, 2]])
    out = relabel_sequential(lab)
    assert out.dtype == np.uint32 and out.tolist() == [[0, 1, 1], [2, 0, 3]]


def test_dense_labels_keeps_id_order_and_maps_back():
    lab = np.array([[0, 900, 900], [7, 0, 31]])
    ids, dense = dense_labels(lab)
    assert ids.tolist() == [7, 31, 900] and dense.tolist() == [[0, 3, 3], [1, 0, 2]]
    assert np.array_equal(np.concatenate([[0], ids])[dense], lab)
    ids, dense = dense_labels(np.zeros((0,), int))
    assert len(ids) == 0 and dense.shape == (0,)


def test_relabel_instances_follows_table_order_and_works_chunk_by_chunk():
    lab = np.array([[2049, 2049, 0, 1025], [7, 0, 0, 1025]])
    table = pd.DataFrame({"label": [7, 1025, 2049, 4000], "score": [0.9, 0.8, 0.7, 0.6]})
    new, tab = relabel_instances(lab, table)
    assert new.dtype == np.uint32 and new.tolist() == [[3, 3, 0, 2], [1, 0, 0, 2]]
    assert tab["label"].tolist() == [1, 2, 3] and tab["score"].tolist() == [0.9, 0.8, 0.7]
    # without dropping empty rows, each chunk alone gives the same numbering as the whole
    whole, _ = relabel_instances(lab, table, drop_empty=False)
    parts = np.concatenate([relabel_instances(lab[:, :2], table, False)[0],
                            relabel_instances(lab[:, 2:], table, False)[0]], axis=1)
    assert np.array_equal(parts, whole)
    with pytest.raises(ValueError, match="without a table row"):
        relabel_instances(np.array([[5]]), table)


def test_label_centroids_and_size_filter_and_holes():
    lab = np.zeros((6, 8), int)
    lab[0:3, 0:3] = 4
    lab[1, 1] = 0  # a hole
    lab[5, 6:8] = 2
    ids, cen = label_centroids(lab)
    assert ids.tolist() == [2, 4] and np.allclose(cen, [[5.0, 6.5], [1.0, 1.0]])
    assert np.array_equal(centroids(lab), cen)
    small = remove_small(lab, 3)
    assert set(np.unique(small)) == {0, 4} and remove_small(lab, 1) is lab
    filled = fill_label_holes(lab)
    assert filled[1, 1] == 4 and (filled[lab > 0] == lab[lab > 0]).all() and filled[4, 0] == 0


def test_mask_box_and_paint_instances():
    m = np.zeros((5, 6), bool)
    m[1:4, 2:5] = True
    assert mask_box(m) == (1, 2, 4, 5) and mask_box(np.zeros((3, 3), bool)) is None
    # two overlapping 3x3 squares in a region offset by (1, 1): the middle column goes to the first
    sq = np.ones((3, 3), bool)
    out = paint_instances((slice(1, 4), slice(1, 6)), [(5, 1, 1, sq, 2.0, 2.0), (6, 1, 3, sq, 2.0, 4.0)])
    assert out.tolist() == [[5, 5, 5, 6, 6]] * 3


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
    lab = np.zeros((30, 30), np.uint32)
    lab[disk((10, 10), 6)] = 1
    lab[disk((10, 20), 6)] = 2  # touching discs: one foreground component
    c = centroids(lab)
    assert c.shape == (2, 2) and np.allclose(c[0], (10, 10 - 0.7), atol=1.0)
    maps = np.stack([(lab > 0).astype(np.float32), np.zeros((30, 30)), np.zeros((30, 30))])
    out = instances_from_maps(maps, mode="points", points=c, min_area=1)
    assert out.max() == 2 and matching(lab, out, 0.8)["tp"] == 2
