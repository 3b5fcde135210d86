import numpy as np
import pytest

from plateseg.segment.cells import cytoplasm, propagate_cells


def _two_touching_cells():
    """Two round cells that touch, the stain dimmer where they meet (at x = 30), nuclei at x = 18 and 44."""
    yy, xx = np.mgrid[:40, :64]
    left = np.hypot(yy - 20, xx - 18) < 14
    right = np.hypot(yy - 20, xx - 44) < 16
    image = np.where(left | right, 1000.0, 50.0)
    image[:, 30] = np.where(left[:, 30] | right[:, 30], 500.0, 50.0)  # the valley between them
    nuclei = np.zeros((40, 64), np.int32)
    nuclei[np.hypot(yy - 20, xx - 18) < 5] = 3
    nuclei[np.hypot(yy - 20, xx - 44) < 5] = 7
    return image, nuclei, left, right


def test_touching_cells_split_at_the_valley_and_hold_their_nucleus():
    image, nuclei, left, right = _two_touching_cells()
    cells = propagate_cells(nuclei, image, sigma=0, regularization=0.001)
    assert set(np.unique(cells)) == {0, 3, 7}
    for lab in (3, 7):
        assert (cells[nuclei == lab] == lab).all()  # every cell holds its whole nucleus, with its label
    # the boundary is the valley column, not the midpoint of the nuclei (x = 31)
    row = cells[20]
    assert (row[18:30] == 3).all() and (row[31:44] == 7).all()
    # outside the stain nothing is a cell
    assert (cells[~(left | right)] == 0).all()
    cyto = cytoplasm(cells, nuclei)
    assert not (cyto[nuclei > 0]).any() and set(np.unique(cyto)) == {0, 3, 7}


def test_distance_cap_and_nuclei_outside_the_mask_keep_a_cell():
    image = np.full((30, 80), 1000.0)
    image[:, 60:] = 10.0  # the stain ends at x = 60
    nuclei = np.zeros((30, 80), np.int32)
    nuclei[14:17, 5:8] = 1
    nuclei[14:17, 70:73] = 2  # in the dark: no cell mask around it
    cells = propagate_cells(nuclei, image, sigma=0, max_distance=20)
    assert (cells[nuclei == 2] == 2).all() and (cells == 2).sum() == (nuclei == 2).sum()
    ys, xs = np.nonzero(cells == 1)
    from scipy import ndimage as ndi

    dist = ndi.distance_transform_edt(nuclei != 1)
    assert dist[ys, xs].max() <= 20 and (cells == 1).sum() > 9
    assert propagate_cells(np.zeros((5, 5), int), np.ones((5, 5))).max() == 0
    with pytest.raises(ValueError, match="differ in shape"):
        propagate_cells(nuclei, image[:10])


def test_propagation_from_true_nuclei_finds_the_synthetic_cells():
    """The defaults (chosen on seed-0 demo wells) on other synthetic fields, seeded by the true nuclei: the cells'
    DSB mAP was 0.51, 0.64, 0.60 (mean 0.58) when written; issue 14 asks for 0.6 on the demo."""
    from plateseg.evaluation.metrics import evaluate_pair
    from plateseg.io.synth import cell_channel, synth_field

    scores = []
    for seed in (11, 12, 13):
        _, nuclei = synth_field(np.random.default_rng(seed), shape=(256, 256), density=1.2)
        stain, truth = cell_channel(nuclei, np.random.default_rng(seed + 100))
        scores.append(evaluate_pair(truth, propagate_cells(nuclei, stain))["dsb_map"])
    assert np.mean(scores) >= 0.55 and min(scores) > 0.45, scores
