"""Annotated training folders: loading, grouped k-fold splits, content hash.

An annotated folder has the layout of ``data/dsb2018/<set>`` and of
:func:`plateseg.io.synth.write_training_set`::

    folder/images/<id>.png | <id>.tif    image: (h, w), (h, w, 3|4) or (c, h, w)
    folder/masks/<id>.tif                uint16 instance labels, 0 = background
    folder/index.csv                     one row per image; at least ``id``

Near-duplicate crops of one source image must stay in one fold, or cross-validation scores are
optimistic. If the index has a ``group`` column it is used as is. Otherwise groups are derived
(:func:`derive_groups`): images of the same ``modality`` (if the index has one) and the same
``height x width`` are clustered by average linkage on three per-image statistics that crops of
one acquisition share, and pairs closer than ``distance`` (default 0.25) join a group:

* ``log1p`` of the median image intensity (background level),
* ``log1p`` of the mean intensity of object pixels (stain brightness / exposure),
* ``0.5 * log`` of the median object area (magnification and cell type: log of a radius).

On DSB2018 ``fluo`` (541 images) this gives 83 groups, the largest of 49 images.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["read_image", "load_annotated", "image_stats", "derive_groups", "grouped_folds",
           "fold_split", "data_hash"]

IMAGE_SUFFIXES = (".png", ".tif", ".tiff")
STAT_COLUMNS = ("stat_median", "stat_fg_mean", "stat_area")


def read_image(path, channels="gray") -> np.ndarray:
    """Read a PNG or TIFF image as ``(c, h, w)``.

    Parameters
    ----------
    path : str or path-like
        ``.png``, ``.tif`` or ``.tiff``.
    channels : {"gray", "keep"} or sequence of int
        ``"gray"``: one channel; colour images (RGB, alpha dropped) become the mean of R, G, B
        (float32), grayscale images keep their dtype. ``"keep"``: all channels (alpha dropped
        from 4-channel PNGs). A sequence of ints: those channels.

    Returns
    -------
    numpy.ndarray
        ``(c, h, w)``, dtype of the file (float32 for a grayscale conversion of colour).

    Notes
    -----
    A 3-D TIFF whose last axis has at most 4 entries and whose first axis has more is taken as
    ``(h, w, c)``; any other 3-D TIFF as ``(c, h, w)``.
    """
    path = Path(path)
    if path.suffix.lower() == ".png":
        import imageio.v3 as iio

        arr = np.asarray(iio.imread(path))
        if arr.ndim == 3:
            arr = np.moveaxis(arr, -1, 0)
            if arr.shape[0] == 4:
                arr = arr[:3]
    else:
        import tifffile

        arr = np.asarray(tifffile.imread(path))
        if arr.ndim == 3 and arr.shape[-1] <= 4 < arr.shape[0]:
            arr = np.moveaxis(arr, -1, 0)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"{path}: expected a 2-D image or channels, got shape {arr.shape}")
    if isinstance(channels, str):
        if channels == "gray":
            if arr.shape[0] > 1:
                arr = arr[:3].astype(np.float32).mean(axis=0, keepdims=True)
        elif channels != "keep":
            raise ValueError(f"channels must be 'gray', 'keep' or a list of ints, got {channels!r}")
    else:
        arr = arr[list(channels)]
    return arr


def _find_image(folder: Path, image_id: str) -> Path:
    for suf in IMAGE_SUFFIXES:
        p = folder / "images" / f"{image_id}{suf}"
        if p.exists():
            return p
    raise FileNotFoundError(f"no image for id {image_id!r} in {folder / 'images'}")


def _read_index(folder: Path) -> pd.DataFrame:
    path = folder / "index.csv"
    if path.exists():
        index = pd.read_csv(path, dtype={"id": str})
        if "id" not in index.columns:
            raise ValueError(f"{path} has no 'id' column")
        return index
    ids = sorted(p.stem for p in (folder / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return pd.DataFrame({"id": ids})


def image_stats(image, mask) -> dict:
    """Per-image statistics used to derive groups (see the module docstring).

    Parameters
    ----------
    image : array_like
        ``(c, h, w)`` or ``(h, w)``; channels are averaged.
    mask : array_like
        ``(h, w)`` instance labels.

    Returns
    -------
    dict
        ``stat_median``, ``stat_fg_mean``, ``stat_area`` (floats).

    Examples
    --------
    >>> img = np.zeros((1, 4, 4)); img[0, :2, :2] = 10
    >>> m = np.zeros((4, 4), int); m[:2, :2] = 1
    >>> image_stats(img, m)
    {'stat_median': 0.0, 'stat_fg_mean': 10.0, 'stat_area': 4.0}
    """
    g = np.asarray(image, np.float64)
    if g.ndim == 3:
        g = g.mean(axis=0)
    m = np.asarray(mask)
    areas = np.bincount(m.ravel().astype(np.int64))[1:]
    areas = areas[areas > 0]
    return {
        "stat_median": float(np.median(g)),
        "stat_fg_mean": float(g[m > 0].mean()) if (m > 0).any() else 0.0,
        "stat_area": float(np.median(areas)) if len(areas) else 0.0,
    }


def load_annotated(folder, channels="gray", ids=None):
    """Load an annotated folder.

    Parameters
    ----------
    folder : str or path-like
        Folder with ``images/``, ``masks/`` and (optionally) ``index.csv``.
    channels : {"gray", "keep"} or sequence of int
        See :func:`read_image`.
    ids : sequence of str, optional
        Load only these ids (in this order); default all ids of the index.

    Returns
    -------
    items : list of tuple
        ``(id, image (c, h, w), mask (h, w))``; masks keep their integer dtype.
    index : pandas.DataFrame
        The index rows of the loaded ids, with ``height``, ``width``, ``n_objects`` filled in
        if missing and the per-image statistics of :func:`image_stats` added.
    """
    folder = Path(folder)
    index = _read_index(folder)
    index["id"] = index["id"].astype(str)
    if ids is not None:
        ids = [str(i) for i in ids]
        missing = set(ids) - set(index["id"])
        if missing:
            raise KeyError(f"ids not in {folder}: {sorted(missing)[:5]}")
        index = index.set_index("id").loc[ids].reset_index()
    import tifffile

    items, rows = [], []
    for image_id in index["id"]:
        image = read_image(_find_image(folder, image_id), channels)
        mpath = folder / "masks" / f"{image_id}.tif"
        if not mpath.exists():
            raise FileNotFoundError(f"no mask {mpath}")
        mask = np.asarray(tifffile.imread(mpath))
        if mask.shape != image.shape[-2:]:
            raise ValueError(f"{image_id}: mask {mask.shape} != image {image.shape[-2:]}")
        items.append((image_id, image, mask))
        row = {"id": image_id, "height": mask.shape[0], "width": mask.shape[1],
               "n_objects": int(len(np.unique(mask)) - (mask == 0).any())}
        row.update(image_stats(image, mask))
        rows.append(row)
    extra = pd.DataFrame(rows, columns=["id", "height", "width", "n_objects", *STAT_COLUMNS])
    keep = [c for c in index.columns if c == "id" or c not in extra.columns]
    index = index[keep].merge(extra, on="id", how="left")
    return items, index


def derive_groups(index: pd.DataFrame, distance: float = 0.25) -> pd.Series:
    """Group near-duplicate images (see the module docstring for the rule).

    Parameters
    ----------
    index : pandas.DataFrame
        Needs ``height``, ``width`` and the columns ``stat_median``, ``stat_fg_mean``,
        ``stat_area`` (from :func:`load_annotated`); ``modality`` is used if present. Without
        the statistics, a ``bg_median`` column stands in for ``stat_median`` and the other two
        are ignored.
    distance : float
        Average-linkage cut in the statistics space.

    Returns
    -------
    pandas.Series
        Group names ``"<modality>/<h>x<w>/<k>"``, aligned with ``index``.
    """
    from scipy.cluster.hierarchy import fcluster, linkage

    df = index.reset_index(drop=True)
    cols = []
    if "stat_median" in df:
        cols.append(np.log1p(df["stat_median"].astype(float).clip(lower=0)))
    elif "bg_median" in df:
        cols.append(np.log1p(df["bg_median"].astype(float).clip(lower=0)))
    if "stat_fg_mean" in df:
        cols.append(np.log1p(df["stat_fg_mean"].astype(float).clip(lower=0)))
    if "stat_area" in df:
        cols.append(0.5 * np.log(df["stat_area"].astype(float).clip(lower=1)))
    feats = np.stack(cols, axis=1) if cols else np.zeros((len(df), 1))
    modality = df["modality"].astype(str) if "modality" in df else pd.Series(["img"] * len(df))
    keys = modality + "/" + df["height"].astype(str) + "x" + df["width"].astype(str)
    groups = pd.Series([""] * len(df), index=df.index, dtype=object)
    for key in sorted(keys.unique()):
        rows = np.flatnonzero((keys == key).to_numpy())
        if len(rows) == 1:
            lab = np.array([1])
        else:
            lab = fcluster(linkage(feats[rows], "average"), distance, "distance")
        for r, k in zip(rows, lab):
            groups.iloc[r] = f"{key}/{int(k)}"
    groups.index = index.index
    return groups


def grouped_folds(index: pd.DataFrame, k: int = 5, seed: int = 0,
                  distance: float = 0.25) -> pd.DataFrame:
    """Assign images to ``k`` folds so that every group lies in a single fold.

    Groups come from ``index["group"]`` if present, else from :func:`derive_groups`. Groups are
    taken largest first (ties in a seeded random order) and each goes to the fold that has the
    fewest images so far (lowest fold number on ties), which balances fold sizes.

    Parameters
    ----------
    index : pandas.DataFrame
        One row per image with ``id`` (and ``group``, or what :func:`derive_groups` needs).
    k : int
        Number of folds (>= 2, at most the number of groups).
    seed : int
        Seed of the tie-breaking order.
    distance : float
        Passed to :func:`derive_groups`.

    Returns
    -------
    pandas.DataFrame
        ``id, group, fold`` (fold in 0..k-1), in the order of ``index``.

    Examples
    --------
    >>> idx = pd.DataFrame({"id": list("abcdef"), "group": [0, 0, 1, 2, 2, 3]})
    >>> f = grouped_folds(idx, k=2)
    >>> f.groupby("group").fold.nunique().max(), sorted(f.fold.value_counts().tolist())
    (np.int64(1), [3, 3])
    """
    if k < 2:
        raise ValueError("k must be >= 2")
    groups = index["group"] if "group" in index.columns else derive_groups(index, distance)
    groups = groups.reset_index(drop=True)
    sizes = groups.value_counts(sort=False)
    names = list(sizes.index)
    if len(names) < k:
        raise ValueError(f"{len(names)} groups cannot fill {k} folds")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(names))
    order = sorted(order, key=lambda i: -int(sizes.iloc[i]))  # stable: size, then random
    load = np.zeros(k, np.int64)
    fold_of = {}
    for i in order:
        f = int(np.argmin(load))
        fold_of[names[i]] = f
        load[f] += int(sizes.iloc[i])
    return pd.DataFrame({
        "id": index["id"].astype(str).to_numpy(),
        "group": groups.to_numpy(),
        "fold": groups.map(fold_of).astype(np.int64).to_numpy(),
    })


def fold_split(ids, folds: pd.DataFrame, fold):
    """Training and held-out ids of a fold model: ``fold`` ``"all"`` holds out nothing.

    Parameters
    ----------
    ids : sequence of str
        Image ids, in the order to keep.
    folds : pandas.DataFrame
        ``id`` and ``fold`` columns (:func:`grouped_folds`); unused for ``"all"``.
    fold : int or str
        A fold number, or ``"all"``.

    Examples
    --------
    >>> folds = pd.DataFrame({"id": ["a", "b", "c"], "fold": [0, 1, 0]})
    >>> fold_split(["a", "b", "c"], folds, "0")
    (['b'], ['a', 'c'])
    >>> fold_split(["a", "b"], folds, "all")
    (['a', 'b'], [])
    """
    ids = [str(i) for i in ids]
    if str(fold) == "all":
        return ids, []
    fold_of = dict(zip(folds["id"].astype(str), folds["fold"].astype(int)))
    if int(fold) not in set(fold_of.values()):
        raise ValueError(f"fold {fold} does not exist: the fold table has folds 0..{max(fold_of.values())} "
                         "(config key training.folds)")
    missing = [i for i in ids if i not in fold_of]
    if missing:
        raise ValueError(f"images without a fold: {missing[:5]}; the fold table is out of date")
    val = [i for i in ids if fold_of[i] == int(fold)]
    held = set(val)
    return [i for i in ids if i not in held], val


def data_hash(folder, length: int | None = 16) -> str:
    """SHA-256 of an annotated folder's content: ``index.csv``, ``images/*`` and ``masks/*``.

    File names (relative paths) and bytes enter the hash, in sorted order, so renaming,
    editing, adding or removing an image or mask changes it; timestamps do not.

    Parameters
    ----------
    folder : str or path-like
    length : int or None
        Number of hex digits returned (None: all 64).

    Returns
    -------
    str
    """
    folder = Path(folder)
    files = []
    if (folder / "index.csv").exists():
        files.append(folder / "index.csv")
    for sub in ("images", "masks"):
        d = folder / sub
        if d.is_dir():
            files.extend(sorted(p for p in d.iterdir() if p.is_file()))
    if not files:
        raise FileNotFoundError(f"no annotated data in {folder}")
    digest = hashlib.sha256()
    for p in files:
        rel = p.relative_to(folder).as_posix().encode()
        digest.update(len(rel).to_bytes(8, "little") + rel)
        data = p.read_bytes()
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    h = digest.hexdigest()
    return h if length is None else h[:length]
