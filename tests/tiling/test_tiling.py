import numpy as np
import pytest
from scipy import ndimage as ndi

from plateseg.tiling.grid import (blend_window, cut_by_halo, owned_by_tile, owner_mask,
                             predict_tiled, tile_grid)


@pytest.mark.parametrize("shape,tile,halo", [((100, 130), 32, 8), ((64, 64), 64, 16),
                                             ((50, 70), (16, 24), (4, 10)), ((5, 3), 4, 6)])
def test_grid_partitions_field_and_windows_are_consistent(shape, tile, halo):
    tiles = tile_grid(shape, tile, halo)
    ty, tx = (tile, tile) if np.isscalar(tile) else tile
    hy, hx = (halo, halo) if np.isscalar(halo) else halo
    cover = np.zeros(shape, int)
    for n, t in enumerate(tiles):
        assert t.number == n
        ys, xs = t.core
        cover[ys, xs] += 1
        assert ys.start % ty == 0 and xs.start % tx == 0  # aligned to the chunk grid
        assert t.index == (ys.start // ty, xs.start // tx)
        assert t.read[0].start == max(ys.start - hy, 0) and t.read[0].stop == min(ys.stop + hy, shape[0])
        assert t.read[1].start == max(xs.start - hx, 0) and t.read[1].stop == min(xs.stop + hx, shape[1])
        rel = t.core_in_read
        assert rel[0].start == ys.start - t.read[0].start and rel[0].stop - rel[0].start == ys.stop - ys.start
        (pt, pb), (pl, pr) = t.pad
        assert pt + (t.read[0].stop - t.read[0].start) + pb == ty + 2 * hy
        assert pl + (t.read[1].stop - t.read[1].start) + pr == tx + 2 * hx
    assert (cover == 1).all()
    assert [t.index for t in tiles] == sorted(t.index for t in tiles)  # row-major


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


def test_ownership_by_centroid():
    tiles = tile_grid((64, 64), 32, 8)
    cen = np.array([[31.4, 31.4], [31.5, 31.5], [0.0, 63.0], [40.0, 5.0]])
    owners = np.array([owned_by_tile(cen, t) for t in tiles])  # (tiles, objects)
    assert (owners.sum(0) == 1).all()  # every object has exactly one owner
    assert owners[:, 0].tolist() == [True, False, False, False]
    assert owners[:, 1].tolist() == [False, False, False, True]
    assert owners[:, 2].tolist() == [False, True, False, False]
    assert owners[:, 3].tolist() == [False, False, True, False]


def test_owner_mask_and_cut_objects():
    shape = (64, 64)
    t = tile_grid(shape, 32, 8)[0]  # core 0..32, read 0..40
    lab = np.zeros((40, 40), int)
    lab[10:14, 10:14] = 1          # owned, inside
    lab[28:36, 10:14] = 2          # centroid y 31.5 falls in row 32: the neighbour's
    lab[30:33, 20:23] = 3          # centroid 31 -> owned
    lab[36:40, 30:40] = 4          # neighbour's, touches the halo edge
    lab[20:26, 0:3] = 5            # at the field edge: owned, field edge is not a cut
    lab[25:32, 34:40] = 6          # centroid x 36.5 -> not owned
    lab[0:4, 28:40] = 7            # centroid x 33.5 -> not owned, touches edge
    lab[5:9, 23:40] = 8            # centroid x 31 -> owned, touches the halo edge: cut
    mask = owner_mask(lab, t)
    assert sorted(np.unique(lab[mask]).tolist()) == [1, 3, 5, 8]
    assert cut_by_halo(lab, t, shape).tolist() == [8]
