"""The tile grid, the tile scheduler and tile ownership."""
import numpy as np
import pytest

from plateseg.tiling.grid import TileSchedule, cut_by_halo, owned_by_tile, owner_mask, tile_grid


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


@pytest.mark.parametrize("shape,tile,halo,start,batch", [((100, 130), 32, 8, 0, 1), ((100, 130), 32, 40, 5, 3),
                                                         ((50, 70), (16, 24), (4, 30), 7, 4)])
def test_schedule_writes_each_core_once_in_order_after_all_overlapping_tiles(shape, tile, halo, start, batch):
    """A core is released only when every tile whose read window overlaps it has been read, in tile order,
    each exactly once; tiles whose windows reach no core from ``start`` on are not read."""
    s = TileSchedule(shape, tile, halo, start)
    overlaps = {t.number: [u.number for u in s.tiles
                           if u.read[0].start < t.core[0].stop and t.core[0].start < u.read[0].stop
                           and u.read[1].start < t.core[1].stop and t.core[1].start < u.read[1].stop]
                for t in s.tiles}
    assert all(set(overlaps[t.number]) <= set(s.neighbours(t)) for t in s.tiles)
    assert s.needed == sorted({u for k in range(start, len(s.tiles)) for u in overlaps[k]})
    read, written = [], []
    for ids in s.batches(batch):
        assert len(ids) <= batch
        read.extend(ids)
        for t in s.ready(ids[-1]):
            assert set(overlaps[t.number]) <= set(read)  # every tile overlapping its core was read
            written.append(t.number)
    assert read == s.needed and written == list(range(start, len(s.tiles)))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_map_windows_keeps_key_order_and_bounds_the_windows_in_flight(threads):
    """Results come back in key order whatever the threads; at most threads + 1 windows are read and not yet
    processed or being processed at once (one wave and the next wave's first window)."""
    import threading
    import time

    from plateseg.tiling.grid import map_windows

    lock, live, peak = threading.Lock(), [0], [0]

    def read(k):
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        return k * 10

    def work(window, k):
        time.sleep(0.002 * ((k * 7) % 5))  # uneven blocks: finishing order differs from key order
        with lock:
            live[0] -= 1
        return window + 1, threading.get_ident()

    out = list(map_windows(work, read, range(11), threads))
    assert [k for k, _ in out] == list(range(11)) and [r for _, (r, _) in out] == [10 * k + 1 for k in range(11)]
    assert peak[0] <= threads + 1 and live[0] == 0
    if threads == 1:  # one window worked on while the next is read, as the old reader thread did
        assert peak[0] == 2


def test_map_windows_runs_a_wave_at_once():
    """With threads 2 the two blocks of a wave run at the same time (each waits for the other at a barrier)."""
    import threading

    from plateseg.tiling.grid import map_windows

    barrier = threading.Barrier(2, timeout=10)
    assert [r for _, r in map_windows(lambda w, k: barrier.wait() >= 0, lambda k: k, range(4), threads=2)] == [True] * 4
    alone = threading.Barrier(2, timeout=0.5)
    with pytest.raises(threading.BrokenBarrierError):  # threads 1: one block at a time
        list(map_windows(lambda w, k: alone.wait(), lambda k: k, range(2), threads=1))
