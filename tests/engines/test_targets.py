import numpy as np
import pytest
from scipy import ndimage as ndi

from plateseg.engines.targets import (boundary_target, centre_heatmap, foreground_target,
                              object_centres, render_heatmap, unet_weight_map)


def two_touching(gap=0):
    lab = np.zeros((6, 10 + gap), np.int32)
    lab[1:5, 1:5] = 1
    lab[1:5, 5 + gap:9 + gap] = 2
    return lab


def random_labels(seed, shape=(40, 40), n=12):
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, np.int32)
    for i in range(1, n + 1):
        y, x = rng.integers(0, shape[0] - 6), rng.integers(0, shape[1] - 6)
        h, w = rng.integers(3, 9, size=2)
        lab[y:y + h, x:x + w] = i  # later objects overwrite earlier ones: touching objects
    return lab


def disk(r):
    yy, xx = np.mgrid[-int(r):int(r) + 1, -int(r):int(r) + 1]
    return yy ** 2 + xx ** 2 <= r * r


def test_foreground():
    lab = two_touching()
    fg = foreground_target(lab)
    assert fg.dtype == np.float32 and fg.sum() == 32 and set(np.unique(fg)) == {0.0, 1.0}


def test_boundary_of_two_touching_squares():
    lab = two_touching()
    bd = boundary_target(lab, width=1)
    expected = np.zeros_like(bd)
    expected[1:5, 4:6] = 1  # the last column of one square and the first of the other
    np.testing.assert_array_equal(bd, expected)
    assert bd.dtype == np.float32


def test_boundary_across_a_one_pixel_gap():
    lab = two_touching(gap=1)  # squares at columns 1..4 and 6..9, gap at column 5
    bd = boundary_target(lab, width=1)
    expected = np.zeros_like(bd)
    expected[1:5, 5] = 1  # only the gap pixel is within 1 px of both
    np.testing.assert_array_equal(bd, expected)
    bd2 = boundary_target(lab, width=2)
    expected2 = np.zeros_like(bd2)
    expected2[1:5, 4:7] = 1
    expected2[0, 5] = expected2[5, 5] = 1  # the disk of radius 2 reaches round the corners
    np.testing.assert_array_equal(bd2, expected2)


def test_no_boundary_for_isolated_or_distant_objects():
    lab = np.zeros((20, 30), np.int32)
    lab[2:8, 2:8] = 1
    lab[2:8, 14:20] = 2  # 6 px apart: farther than 2 * width
    assert not boundary_target(lab, width=2).any()
    assert not boundary_target(lab == 1, width=2).any()
    assert not boundary_target(np.zeros((5, 5), int)).any()


@pytest.mark.parametrize("seed,width", [(0, 1), (1, 2), (2, 3.5)])
def test_boundary_matches_explicit_dilation_count(seed, width):
    lab = random_labels(seed)
    count = np.zeros(lab.shape, int)
    for i in np.unique(lab[lab > 0]):
        count += ndi.binary_dilation(lab == i, structure=disk(width))
    np.testing.assert_array_equal(boundary_target(lab, width), (count >= 2).astype(np.float32))


def test_heatmap_peaks_at_each_centre_of_touching_objects():
    lab = two_touching()
    hm = centre_heatmap(lab, sigma=1.0)
    peaks = np.argwhere(hm == 1.0)
    # centroids (2.5, 2.5) and (2.5, 6.5) round to (3, 3) and (3, 7)
    assert peaks.tolist() == [[3, 3], [3, 7]]
    assert hm[3, 4] == pytest.approx(np.exp(-0.5), abs=1e-6)  # 1 px from a centre
    assert hm[3, 5] == pytest.approx(np.exp(-2.0), abs=1e-6)  # 2 px from both: max, not sum
    assert hm.max() <= 1.0 and hm.dtype == np.float32


def test_heatmap_centre_lies_on_a_non_convex_object():
    lab = np.zeros((12, 12), np.int32)
    lab[1:11, 1:3] = 1
    lab[1:3, 1:11] = 1
    lab[9:11, 1:11] = 1  # a "C": the centroid is in the hole
    ids, cen = object_centres(lab)
    assert ids.tolist() == [1] and lab[tuple(cen[0])] == 1
    hm = centre_heatmap(lab, sigma=1.5)
    assert lab[np.unravel_index(np.argmax(hm), hm.shape)] == 1 and hm.max() == 1.0


def test_heatmap_relative_sigma_and_off_image_centres():
    lab = np.zeros((40, 40), np.int32)
    lab[2:6, 2:6] = 1           # small
    lab[15:35, 15:35] = 2       # large
    hm = centre_heatmap(lab, sigma=1.0, sigma_relative=0.5)
    (ys, xs) = np.argwhere(hm == 1).T
    assert len(ys) == 2
    assert hm[25, 25 + 3] > 0.5 > hm[4, 4 + 3]  # wider Gaussian on the large object
    tail = render_heatmap((10, 10), [[-2, 5]], 2.0)  # centre above the image
    assert tail.max() == pytest.approx(np.exp(-4 / 8), abs=1e-6) and tail[0, 5] == tail.max()


def test_weight_map_in_the_gap_between_touching_objects():
    lab = np.zeros((7, 9), np.int32)
    lab[1:6, 1:4] = 1
    lab[1:6, 5:8] = 2  # gap at column 4
    w = unet_weight_map(lab, w0=10, sigma=5, class_balance=False)
    assert w[3, 4] == pytest.approx(1 + 10 * np.exp(-(1 + 1) ** 2 / 50), rel=1e-5)
    assert (w[lab > 0] == 1).all()  # the border term is on background only
    assert w[3, 4] > w[0, 0] > 1  # corner: farther from both objects


def test_weight_map_matches_brute_force_and_class_balance():
    lab = random_labels(3, (32, 32), 8)
    w0, sigma = 10.0, 5.0
    d = np.stack([ndi.distance_transform_edt(lab != i) for i in np.unique(lab[lab > 0])])
    d.sort(axis=0)
    fg = lab > 0
    wc = np.where(fg, fg.size / (2 * fg.sum()), fg.size / (2 * (~fg).sum()))
    ref = wc + np.where(fg, 0, w0 * np.exp(-(d[0] + d[1]) ** 2 / (2 * sigma ** 2)))
    got = unet_weight_map(lab, w0, sigma)
    np.testing.assert_allclose(got, ref, atol=1e-3)  # cut-off at 1e-3 of the border term
    assert wc.mean() == pytest.approx(1.0)


def test_weight_map_single_object_and_empty():
    lab = np.zeros((10, 10), np.int32)
    assert (unet_weight_map(lab) == 1).all()
    lab[2:5, 2:5] = 1
    w = unet_weight_map(lab, class_balance=False)
    assert (w == 1).all()
