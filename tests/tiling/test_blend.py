"""Blended per-pixel maps from overlapping tiles."""
import numpy as np
import pytest
from scipy import ndimage as ndi

from plateseg.tiling.blend import blend_window, predict_tiled


def test_blend_window():
    w = blend_window((48, 48), 8)
    assert w.dtype == np.float32
    assert (w[8:40, 8:40] == 1).all() and (w > 0).all() and (w <= 1).all()
    np.testing.assert_array_equal(w, w[::-1, ::-1])
    np.testing.assert_array_equal(w, w.T)
    assert (np.diff(w[24, :9]) > 0).all()  # rises towards the core
    wt = blend_window((48, 48), 8, trim=3)
    assert (wt[:3] == 0).all() and (wt[:, -3:] == 0).all() and (wt[3:45, 3:45] > 0).all()
    assert (blend_window((48, 48), 8, trim=8)[8:40, 8:40] == 1).all()
    with pytest.raises(ValueError):
        blend_window((48, 48), 8, trim=9)


def _reader(img):
    return lambda sl: img[(slice(None),) + tuple(sl)]


def test_local_function_tiled_equals_untiled_exactly():
    # a 5x5 mean looks 2 px around: exact when the outer 2 halo pixels are left out of the blend
    img = np.random.default_rng(0).random((2, 70, 93)).astype(np.float32)
    mean5 = lambda b: ndi.uniform_filter(b, size=(1, 1, 5, 5), mode="mirror")
    ref = ndi.uniform_filter(img, size=(1, 5, 5), mode="mirror")  # numpy "reflect" == scipy "mirror"
    for tile, halo, batch in ((16, 4, 3), (32, 8, 1), ((20, 40), (6, 5), 4)):
        got = predict_tiled(mean5, _reader(img), img.shape, tile, halo, batch, trim=2)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)
    # a point-wise function is exact with any blend
    got = predict_tiled(lambda b: b ** 2, _reader(img), img.shape, 16, 5, 2)
    np.testing.assert_allclose(got, img ** 2, rtol=0, atol=1e-6)


def test_writes_each_core_once_in_order_into_zarr_and_resumes():
    zarr = pytest.importorskip("zarr")
    img = np.random.default_rng(1).random((1, 50, 60)).astype(np.float32)
    fn = lambda b: np.concatenate([ndi.uniform_filter(b, size=(1, 1, 3, 3), mode="mirror"), b], 1)
    ref = predict_tiled(fn, _reader(img), img.shape, 16, 4, 2, trim=1)
    assert ref.shape == (2, 50, 60)

    out = zarr.create_array(store=zarr.storage.MemoryStore(), shape=(2, 50, 60),
                            chunks=(2, 16, 16), dtype="float32", fill_value=np.nan)
    written = []

    class Killed(Exception):
        pass

    def die_after_5(t):
        written.append(t.number)
        if len(written) == 5:
            raise Killed

    with pytest.raises(Killed):
        predict_tiled(fn, _reader(img), img.shape, 16, 4, 2, out, trim=1, on_tile_written=die_after_5)
    assert written == [0, 1, 2, 3, 4]
    partial = out[:]
    assert not np.isnan(partial[:, :32, :16]).any()  # tiles 0..4 (4 = row 1, column 0) written
    assert np.isnan(partial[:, 16:32, 16:]).all() and np.isnan(partial[:, 32:]).all()

    resumed = []
    predict_tiled(fn, _reader(img), img.shape, 16, 4, 3, out, trim=1, start=5,
                  on_tile_written=lambda t: resumed.append(t.number))
    assert resumed == list(range(5, 16))
    np.testing.assert_allclose(out[:], ref, rtol=0, atol=1e-6)


def test_predict_fn_shape_is_checked():
    img = np.zeros((1, 20, 20), np.float32)
    with pytest.raises(ValueError):
        predict_tiled(lambda b: b[:, :, :-1], _reader(img), img.shape, 8, 2)
