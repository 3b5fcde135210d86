import numpy as np
import pytest
from skimage.draw import disk

from plateseg.segment.classical import segment_classical


def _two_touching_disks(shape=(80, 100)):
    img = np.full(shape, 100.0)
    truth = np.zeros(shape, np.int32)
    for i, centre in enumerate([(40, 35), (40, 62)], start=1):  # radius 14, centres 27 apart: they touch
        rr, cc = disk(centre, 14, shape=shape)
        img[rr, cc] = 1000.0
        truth[rr, cc] = i
    return img, truth


def test_touching_nuclei_are_split_along_the_neck():
    img, truth = _two_touching_disks()
    rng = np.random.default_rng(0)
    lab = segment_classical(img + rng.normal(0, 20, img.shape), sigma=1.0, min_distance=8, min_area=30)
    assert lab.dtype == np.uint32 and lab.max() == 2
    for t in (1, 2):  # each true disk is covered by one label for >= 95% of its pixels
        ids, counts = np.unique(lab[truth == t], return_counts=True)
        assert ids[np.argmax(counts)] != 0 and counts.max() >= 0.95 * (truth == t).sum()


def test_min_area_and_empty_images():
    img = np.zeros((40, 40))
    img[5:8, 5:8] = 500  # 9 px speck
    img[20:32, 20:32] = 500
    assert segment_classical(img, sigma=0.5, min_area=30).max() == 1
    assert segment_classical(np.zeros((30, 30), np.uint16)).max() == 0
    with pytest.raises(ValueError, match="threshold must be one of"):
        segment_classical(img, threshold="magic")
    with pytest.raises(ValueError, match="2-D"):
        segment_classical(np.zeros((2, 30, 30)))


def test_background_subtraction_rescues_uneven_illumination():
    img, truth = _two_touching_disks((80, 200))
    img[:, 100:] -= 100
    ramp = np.linspace(0, 3000, 200)[None, :]  # a strong illumination gradient swamps a global threshold
    assert segment_classical(img + ramp, sigma=1.0, min_distance=8, threshold="otsu").max() != 2
    lab_flat = segment_classical(img + ramp, sigma=1.0, background_size=41, min_distance=8, threshold="otsu")
    assert lab_flat.max() == 2


def test_a_saturated_field_gives_no_objects_and_no_error():
    from plateseg.segment.classical import segment_classical

    img = np.full((64, 64), 65535, np.uint16) - (np.arange(64 * 64).reshape(64, 64) % 2).astype(np.uint16)
    assert segment_classical(img, threshold="otsu").max() == 0
    assert segment_classical(np.zeros((32, 32)), threshold="li").max() == 0
