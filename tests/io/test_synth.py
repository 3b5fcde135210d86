import math

import numpy as np
import pandas as pd
import pytest
import tifffile
from scipy import ndimage

from plateseg.cli import main
from plateseg.io.synth import synth_field, write_demo_run, write_training_set


def touching_labels(labels):
    """Labels that touch another label (8-neighbourhood, i.e. a 1-pixel dilation)."""
    touching = set()
    lab = labels
    for a, b in [
        (lab[1:, :], lab[:-1, :]),
        (lab[:, 1:], lab[:, :-1]),
        (lab[1:, 1:], lab[:-1, :-1]),
        (lab[1:, :-1], lab[:-1, 1:]),
    ]:
        m = (a > 0) & (b > 0) & (a != b)
        touching.update(a[m].tolist())
        touching.update(b[m].tolist())
    return touching


def test_deterministic():
    img1, lab1 = synth_field(np.random.default_rng(7), shape=(128, 128))
    img2, lab2 = synth_field(7, shape=(128, 128))
    img3, lab3 = synth_field(8, shape=(128, 128))
    assert img1.tobytes() == img2.tobytes() and lab1.tobytes() == lab2.tobytes()
    assert not np.array_equal(img1, img3)


def test_field_types_labels_and_brightness():
    image, labels = synth_field(3, shape=(160, 192), density=3.0)
    assert image.shape == (2, 160, 192) and image.dtype == np.uint16
    assert labels.shape == (160, 192) and labels.dtype == np.uint32
    n = int(labels.max())
    assert n > 10
    np.testing.assert_array_equal(np.unique(labels), np.arange(n + 1))  # sequential 1..N
    dna = image[0].astype(float)
    means = ndimage.mean(dna, labels, np.arange(1, n + 1))
    assert np.all(means > dna[labels == 0].mean())


def test_no_slivers():
    # crowded fields with many overlaps and border cuts: every visible nucleus must still be one
    # piece of reasonable size (hidden or border slivers are dropped)
    rmin = 6
    for seed in range(4):
        _, labels = synth_field(seed, shape=(128, 160), density=3.0, cluster_fraction=0.6, radius_range=(rmin, 14))
        areas = np.bincount(labels.ravel())[1:]
        assert areas.min() >= 0.3 * math.pi * rmin**2
        for i, sl in enumerate(ndimage.find_objects(labels), start=1):
            assert ndimage.label(labels[sl] == i)[1] == 1


def test_clusters_touch():
    frac = []
    for seed in range(3):
        _, labels = synth_field(seed, shape=(256, 256), density=2.0, cluster_fraction=0.3)
        frac.append(len(touching_labels(labels)) / labels.max())
    assert 0.15 <= np.mean(frac) <= 0.45
    _, labels = synth_field(0, shape=(256, 256), density=2.0, cluster_fraction=0.0)
    assert labels.max() > 10 and not touching_labels(labels)


def test_density_and_marker_level():
    low = sum(int(synth_field(s, shape=(256, 256), density=0.5)[1].max()) for s in range(3))
    high = sum(int(synth_field(s, shape=(256, 256), density=1.5)[1].max()) for s in range(3))
    assert high > 2 * low > 0

    img1, lab1 = synth_field(5, shape=(192, 192), marker_level=1.0)
    img4, lab4 = synth_field(5, shape=(192, 192), marker_level=4.0)
    np.testing.assert_array_equal(lab1, lab4)
    np.testing.assert_array_equal(img1[0], img4[0])  # DNA channel does not depend on the marker
    inside = lab1 > 0
    assert img4[1][inside].mean() - 100 > 2.5 * (img1[1][inside].mean() - 100)


def test_write_demo_run(tmp_path):
    truth = write_demo_run(tmp_path, plate="P1", rows="AB", columns=(1, 2), fields=11, shape=(96, 96), seed=1)
    wells = ["A01", "A02", "B01", "B02"]
    expected = {f"P1_{w}_s{s}_w{c}.tif" for w in wells for s in range(1, 12) for c in (1, 2)}
    assert {p.name for p in (tmp_path / "images").iterdir()} == expected
    assert "P1_A01_s10_w1.tif" in expected and "P1_A01_s11_w2.tif" in expected
    gt = tmp_path / "groundtruth"
    expected_gt = {f"P1_{w}_s{s}_labels.tif" for w in wells for s in range(1, 12)} | {"truth.csv"}
    assert {p.name for p in gt.iterdir()} == expected_gt

    on_disk = pd.read_csv(gt / "truth.csv")
    assert list(on_disk.columns) == ["plate", "well", "row", "column", "field", "n_nuclei", "density", "marker_level"]
    pd.testing.assert_frame_equal(on_disk, truth, check_dtype=False)
    assert len(truth) == 44 and truth.field.min() == 1 and truth.field.max() == 11
    for r in truth.itertuples():
        labels = tifffile.imread(gt / f"P1_{r.well}_s{r.field}_labels.tif")
        assert labels.shape == (96, 96) and int(labels.max()) == r.n_nuclei
    img = tifffile.imread(tmp_path / "images" / "P1_B02_s3_w2.tif")
    assert img.shape == (96, 96) and img.dtype == np.uint16

    by_col = truth.groupby("column")[["density", "n_nuclei"]].mean()
    assert by_col.density[2] > by_col.density[1]
    assert by_col.n_nuclei[2] > 1.5 * by_col.n_nuclei[1]
    by_row = truth.groupby("row").marker_level.mean()
    assert by_row["B"] > by_row["A"]


def test_write_training_set(tmp_path):
    index = write_training_set(tmp_path, n_images=3, shape=(64, 80), seed=2)
    assert list(index.columns) == ["id", "height", "width", "n_objects", "group"]
    assert index.group.tolist() == [0, 0, 1]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "index.csv"), index, check_dtype=False)
    ids = set(index.id)
    assert {p.stem for p in (tmp_path / "images").iterdir()} == ids
    assert {p.stem for p in (tmp_path / "masks").iterdir()} == ids
    for r in index.itertuples():
        img = tifffile.imread(tmp_path / "images" / f"{r.id}.tif")
        mask = tifffile.imread(tmp_path / "masks" / f"{r.id}.tif")
        assert img.shape == mask.shape == (r.height, r.width) == (64, 80)
        assert img.dtype == mask.dtype == np.uint16
        np.testing.assert_array_equal(np.unique(mask), np.arange(r.n_objects + 1))
    # the two crops of group 0 come from one field: they share pixels
    a, b = (tifffile.imread(tmp_path / "images" / f"{i}.tif") for i in index.id[:2])
    np.testing.assert_array_equal(a[:, -20:], b[:, :20])


@pytest.mark.parametrize(
    "args, path",
    [
        (["demo", "--rows", "A", "--columns", "3", "--fields", "1", "--size", "64"], "images/DEMO_A03_s1_w2.tif"),
        (["train", "--n", "2", "--size", "64"], "index.csv"),
    ],
)
def test_cli(tmp_path, args, path):
    assert main(["synth", *args, "--out", str(tmp_path)]) == 0
    assert (tmp_path / path).is_file()
