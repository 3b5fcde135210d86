import warnings

import numpy as np
import pytest

from plateseg.engines.normalize import apply_range, percentile_normalize, percentile_range


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64, np.int16])
def test_dtypes_map_percentiles_to_0_and_1(dtype):
    img = (np.arange(100).reshape(10, 10) * 2).astype(dtype)
    out = percentile_normalize(img, 0, 100)
    assert out.dtype == np.float32 and out.shape == img.shape
    assert out.min() == 0.0 and out.max() == 1.0
    np.testing.assert_allclose(out, img.astype(np.float64) / 198.0, atol=1e-6)


def test_per_channel():
    a = np.arange(64).reshape(8, 8)
    img = np.stack([a, 10 * a + 5000]).astype(np.uint16)
    out = percentile_normalize(img, 0, 100)
    np.testing.assert_allclose(out[0], out[1], atol=1e-6)  # same relative image
    assert out[1].min() == 0.0 and out[1].max() == 1.0


def test_16bit_hot_pixel_is_ignored_by_robust_percentiles():
    rng = np.random.default_rng(0)
    img = rng.integers(1000, 2000, size=(64, 64)).astype(np.uint16)
    img[3, 3] = 65535
    out = percentile_normalize(img)  # 1 / 99.8
    assert out[3, 3] > 20  # not clipped by default
    assert np.median(out) == pytest.approx(0.5, abs=0.05)
    assert percentile_normalize(img, clip=True).max() == 1.0


@pytest.mark.parametrize("value", [0, 7, 65535])
def test_constant_image_gives_zeros_without_warnings(value):
    img = np.full((2, 16, 16), value, np.uint16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = percentile_normalize(img)
    assert out.dtype == np.float32 and not out.any()


def test_non_finite_values():
    img = np.arange(16, dtype=np.float32).reshape(4, 4)
    img[0, 0] = np.nan
    img[1, 1] = np.inf
    out = percentile_normalize(img, 0, 100)
    assert np.isfinite(out).all()
    assert out[0, 0] == 0.0


def test_range_is_broadcastable_and_subsample_is_close():
    rng = np.random.default_rng(1)
    img = rng.gamma(2.0, 100.0, size=(2, 300, 300))
    lo, hi = percentile_range(img)
    assert lo.shape == (2, 1, 1)
    lo_s, hi_s = percentile_range(img, max_pixels=10_000)
    np.testing.assert_allclose(hi_s, hi, rtol=0.1)
    np.testing.assert_allclose(apply_range(img, lo, hi), percentile_normalize(img), atol=1e-6)


def test_bad_percentiles():
    with pytest.raises(ValueError):
        percentile_normalize(np.zeros((4, 4)), 50, 10)
