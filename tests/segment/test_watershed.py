import numpy as np
import pytest
from skimage.draw import disk

from plateseg.engines.targets import boundary_target, centre_heatmap
from plateseg.segment.watershed import instances_from_maps, markers_from_maps


def touching_discs():
    lab = np.zeros((40, 60), np.int32)
    lab[disk((20, 20), 10, shape=lab.shape)] = 1
    rr, cc = disk((20, 37), 9, shape=lab.shape)
    keep = lab[rr, cc] == 0
    lab[rr[keep], cc[keep]] = 2  # touches disc 1
    lab[disk((5, 52), 3, shape=lab.shape)] = 3  # isolated
    return lab


def ideal_maps(lab):
    fg = (lab > 0) * 0.95
    return np.stack([fg, boundary_target(lab, 2) * 0.9, centre_heatmap(lab, 2.0)]).astype(np.float32)


def best_iou(gt, pred):
    out = []
    for i in np.unique(gt[gt > 0]):
        a = gt == i
        ious = [(a & (pred == j)).sum() / (a | (pred == j)).sum() for j in np.unique(pred[a]) if j]
        out.append(max(ious, default=0.0))
    return np.array(out)


@pytest.mark.parametrize("mode", ["boundary", "centre", "points"])
def test_touching_objects_are_separated(mode):
    lab = touching_discs()
    pts = [[20, 20], [20, 37], [5, 52]] if mode == "points" else None
    pred = instances_from_maps(ideal_maps(lab), mode=mode, points=pts, min_area=5)
    assert pred.dtype == np.uint32
    assert sorted(np.unique(pred).tolist()) == [0, 1, 2, 3]  # sequential
    assert (best_iou(lab, pred) > 0.9).all()


def test_flooding_follows_the_foreground_valley():
    fg = np.full((9, 30), 0.9, np.float32)
    fg[:, 18] = 0.6  # dip between two markers, off the middle
    maps = np.stack([fg, np.zeros_like(fg), np.zeros_like(fg)])
    pred = instances_from_maps(maps, "points", points=[[4, 5], [4, 25]], min_area=1)
    assert (pred[:, :18] == pred[4, 5]).all() and (pred[:, 19:] == pred[4, 25]).all()


def test_points_outside_foreground_are_ignored_and_required():
    lab = touching_discs()
    maps = ideal_maps(lab)
    pred = instances_from_maps(maps, "points", points=[[20, 20], [20, 37], [39, 0], [-5, 100]], min_area=10)
    assert pred.max() == 3  # two seeded + the unseeded isolated disc
    with pytest.raises(ValueError):
        instances_from_maps(maps, "points")
    with pytest.raises(ValueError):
        instances_from_maps(maps, "nonsense")


def test_unseeded_components_kept_or_dropped():
    lab = touching_discs()
    maps = ideal_maps(lab)
    maps[2][lab == 3] = 0  # no centre peak on the isolated disc
    assert instances_from_maps(maps, "centre", min_area=10).max() == 3
    assert instances_from_maps(maps, "centre", min_area=10, keep_unseeded=False).max() == 2


def test_min_area_and_hole_filling():
    fg = np.zeros((30, 30), np.float32)
    fg[2:12, 2:12] = 0.9
    fg[5:8, 5:8] = 0.1  # a hole
    fg[20:22, 20:22] = 0.9  # 4 px speck
    maps = np.stack([fg, np.zeros_like(fg), np.zeros_like(fg)])
    pred = instances_from_maps(maps, "boundary", min_area=10)
    assert pred.max() == 1 and (pred[5:8, 5:8] == 1).all() and not pred[20:22, 20:22].any()
    pred = instances_from_maps(maps, "boundary", min_area=1, fill_holes=False)
    assert pred.max() == 2 and not pred[5:8, 5:8].any()


def test_small_marker_specks_do_not_split():
    lab = touching_discs()
    maps = ideal_maps(lab)
    maps[1][16:23, 16:23] = 0.9  # a spurious ring of boundary inside disc 1 ...
    maps[1][19, 19] = 0.0        # ... around a 1-pixel island of marker
    markers = markers_from_maps(maps, "boundary", min_marker_area=3)
    assert len(np.unique(markers[lab == 1])) == 2  # background (the ring) + one marker
    assert instances_from_maps(maps, "boundary", min_area=10).max() == 3
    assert instances_from_maps(maps, "boundary", min_marker_area=1, min_area=1).max() == 4


def test_empty_maps():
    pred = instances_from_maps(np.zeros((3, 16, 16), np.float32), "centre")
    assert pred.shape == (16, 16) and not pred.any() and pred.dtype == np.uint32
