import os

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest
import tifffile

from plateseg.io.annotated import (data_hash, derive_groups, grouped_folds, load_annotated,
                                read_image)


def make_folder(root, with_index=True, group=True):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for k in range(6):
        mask = np.zeros((16, 20), np.uint16)
        mask[2:6, 2:6] = 1
        mask[8:12, 10:15] = 2
        img = (rng.random((16, 20)) * 50 + 100 * (mask > 0)).astype(np.uint16)
        iid = f"img{k}"
        if k == 0:  # an 8-bit RGB PNG whose channels differ
            rgb = np.stack([img, img // 2, np.zeros_like(img)], -1).astype(np.uint8)
            iio.imwrite(root / "images" / f"{iid}.png", rgb)
        else:
            tifffile.imwrite(root / "images" / f"{iid}.tif", img)
        tifffile.imwrite(root / "masks" / f"{iid}.tif", mask)
        rows.append({"id": iid, "group": k // 2})
    if with_index:
        idx = pd.DataFrame(rows)
        if not group:
            idx = idx.drop(columns="group")
        idx.to_csv(root / "index.csv", index=False)
    return root


def test_load_annotated(tmp_path):
    folder = make_folder(tmp_path / "set")
    items, index = load_annotated(folder)
    assert [i for i, _, _ in items] == [f"img{k}" for k in range(6)]
    iid, img, mask = items[0]
    assert img.shape == (1, 16, 20) and mask.shape == (16, 20) and mask.dtype == np.uint16
    rgb = iio.imread(folder / "images" / "img0.png")
    np.testing.assert_allclose(img[0], rgb.astype(np.float32).mean(-1), atol=1e-5)
    assert items[1][1].dtype == np.uint16  # grayscale keeps its dtype
    assert {"group", "height", "width", "n_objects", "stat_median", "stat_fg_mean", "stat_area"} <= set(index.columns)
    assert index.n_objects.tolist() == [2] * 6 and index.stat_area.tolist() == [18.0] * 6

    items, index = load_annotated(folder, channels="keep", ids=["img0", "img3"])
    assert [i for i, _, _ in items] == ["img0", "img3"] and len(index) == 2
    assert items[0][1].shape == (3, 16, 20) and items[1][1].shape == (1, 16, 20)
    assert read_image(folder / "images" / "img0.png", channels=[1]).shape == (1, 16, 20)
    with pytest.raises(KeyError):
        load_annotated(folder, ids=["nope"])


def test_load_without_index_and_missing_mask(tmp_path):
    folder = make_folder(tmp_path / "set", with_index=False)
    items, index = load_annotated(folder)
    assert index.id.tolist() == [f"img{k}" for k in range(6)]
    os.remove(folder / "masks" / "img2.tif")
    with pytest.raises(FileNotFoundError):
        load_annotated(folder)


def test_grouped_folds_keep_groups_together_and_balance():
    idx = pd.DataFrame({"id": [f"i{k}" for k in range(20)],
                        "group": [0] * 5 + [1] * 4 + [2] * 3 + [3] * 3 + [4] * 2 + [5] * 2 + [6]})
    f = grouped_folds(idx, k=3, seed=0)
    assert f.columns.tolist() == ["id", "group", "fold"] and f.id.tolist() == idx.id.tolist()
    assert (f.groupby("group").fold.nunique() == 1).all()
    sizes = f.fold.value_counts()
    assert set(sizes.index) == {0, 1, 2} and sizes.max() - sizes.min() <= 1
    pd.testing.assert_frame_equal(f, grouped_folds(idx, k=3, seed=0))
    with pytest.raises(ValueError):
        grouped_folds(idx, k=8)


def test_derived_groups_cluster_near_duplicates():
    idx = pd.DataFrame({
        "id": list("abcdefg"),
        "height": [256, 256, 256, 256, 256, 360, 360],
        "width": [256, 256, 256, 256, 256, 360, 360],
        "stat_median": [4, 4.2, 40, 41, 4.1, 4, 4],
        "stat_fg_mean": [60, 62, 150, 149, 61, 60, 60],
        "stat_area": [150, 160, 400, 420, 155, 150, 150],
    })
    g = derive_groups(idx)
    assert g[0] == g[1] == g[4] and g[2] == g[3] and g[0] != g[2]
    assert g[5] == g[6] and g[5] != g[0]  # same statistics, other image size
    f = grouped_folds(idx, k=2)
    assert f.groupby("group").fold.nunique().max() == 1 and f.group.nunique() == 3


def test_data_hash(tmp_path):
    folder = make_folder(tmp_path / "set")
    h = data_hash(folder)
    assert len(h) == 16 and h == data_hash(folder) and len(data_hash(folder, None)) == 64
    os.utime(folder / "masks" / "img1.tif", (0, 0))
    assert data_hash(folder) == h  # timestamps do not count
    m = tifffile.imread(folder / "masks" / "img1.tif")
    m[0, 0] = 3
    tifffile.imwrite(folder / "masks" / "img1.tif", m)
    h2 = data_hash(folder)
    assert h2 != h
    os.rename(folder / "masks" / "img1.tif", folder / "masks" / "img1b.tif")
    assert data_hash(folder) != h2
