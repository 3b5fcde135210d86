"""Picking the ensemble's objects: greedy non-maximum suppression of candidates by predicted IoU.

:func:`pick` keeps the candidates of a field greedily by predicted IoU: a candidate whose IoU with an
already kept one exceeds ``nms_iou`` is dropped, and so is one predicted under ``min_iou`` or one whose pixels
are mostly (``max_covered``) taken by kept ones already (a small mask inside a larger kept object).
:func:`ensemble_field` is the whole ensemble of one field (features, picker, pick);
:func:`oracle_pick` the upper bound (true IoU as the score).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from plateseg.ensemble.features import candidate_features, candidate_targets, pair_overlaps

if TYPE_CHECKING:
    from plateseg.ensemble.picker import Picker

__all__ = ["pick", "oracle_pick", "ensemble_field"]


def pick(labels: dict, table: pd.DataFrame, score: str = "predicted_iou", min_iou: float = 0.3,
         nms_iou: float = 0.3, max_covered: float = 0.5):
    """Greedy non-maximum suppression of the candidates of one field by predicted IoU.

    Candidates (rows of ``table``: ``engine``, ``label`` and ``score``) are visited by decreasing
    ``score``; one under ``min_iou`` is dropped, and so is one whose IoU with an already kept
    candidate exceeds ``nms_iou``, or one with more than ``max_covered`` of its pixels already taken by kept
    candidates. A kept candidate takes its pixels not taken yet, so a pixel claimed by two kept
    candidates goes to the one with the higher score.

    The coverage rule is that of panoptic segmentation's merging of instances (Kirillov et al. 2019,
    detectron2's ``overlap_threshold`` 0.5): IoU alone misses a small mask lying inside a larger kept
    object (their IoU is the small area over the large one), which would otherwise survive as the few
    pixels at its rim that the larger object left free.

    Returns
    -------
    labels : numpy.ndarray
        uint32, objects numbered 1..N by decreasing score.
    picks : pandas.DataFrame
        ``label`` (in the returned image), ``engine``, ``source_label``, ``predicted_iou`` (the
        ``score``), ``area`` (pixels kept).

    Examples
    --------
    >>> a = np.zeros((6, 6), int); a[0:4, 0:4] = 1
    >>> b = np.zeros((6, 6), int); b[0:4, 1:4] = 2
    >>> t = pd.DataFrame({"engine": ["u", "m"], "label": [1, 2], "predicted_iou": [0.5, 0.8]})
    >>> out, picks = pick({"u": a, "m": b}, t)
    >>> picks[["label", "engine", "source_label", "area"]].values.tolist()
    [[1, 'm', 2, 12]]

    A small candidate inside a kept one (IoU 0.25, below ``nms_iou``, but fully covered) is dropped:

    >>> c = np.zeros((6, 6), int); c[1:3, 1:3] = 7
    >>> t = pd.DataFrame({"engine": ["u", "m"], "label": [1, 7], "predicted_iou": [0.9, 0.6]})
    >>> pick({"u": a, "m": c}, t)[1][["engine", "source_label", "area"]].values.tolist()
    [['u', 1, 16]]
    """
    from scipy import ndimage as ndi

    engines = list(labels)
    arrays = {e: np.asarray(labels[e]) for e in engines}
    shape = arrays[engines[0]].shape
    order = table.sort_values([score, "engine", "label"], ascending=[False, True, True], kind="stable")
    order = order[order[score] >= min_iou]
    # IoUs between candidates of different engines (those of one engine never overlap)
    conflicts: dict[tuple, list] = {}
    for i, a in enumerate(engines):
        for b in engines[i + 1:]:
            ov = pair_overlaps(arrays[a], arrays[b])
            ov = ov[ov["iou"] > nms_iou]
            for la, lb in zip(ov["label_a"].tolist(), ov["label_b"].tolist()):
                conflicts.setdefault((a, la), []).append((b, lb))
                conflicts.setdefault((b, lb), []).append((a, la))
    boxes = {e: ndi.find_objects(arrays[e]) for e in engines}
    out = np.zeros(shape, np.uint32)
    kept, kept_set = [], set()
    for engine, label, s in zip(order["engine"], order["label"].astype(np.int64), order[score]):
        key = (engine, int(label))
        if any(c in kept_set for c in conflicts.get(key, ())):
            continue
        box = boxes[engine][label - 1] if label - 1 < len(boxes[engine]) else None
        if box is None:  # no pixels
            continue
        mask = arrays[engine][box] == label
        free = mask & (out[box] == 0)
        if free.sum() < (1.0 - max_covered) * mask.sum() or not free.any():
            continue
        kept.append((engine, int(label), float(s), int(free.sum())))
        kept_set.add(key)
        out[box][free] = len(kept)
    picks = pd.DataFrame({"label": np.arange(1, len(kept) + 1, dtype=np.int64),
                          "engine": [k[0] for k in kept], "source_label": [k[1] for k in kept],
                          "predicted_iou": [k[2] for k in kept], "area": np.array([k[3] for k in kept], dtype=np.int64)})
    return out, picks


def oracle_pick(labels: dict, truth: np.ndarray, min_iou: float = 0.3, nms_iou: float = 0.3):
    """The upper bound of picking: :func:`pick` with every candidate's true IoU as its score.

    Examples
    --------
    >>> gt = np.zeros((6, 6), int); gt[0:4, 1:4] = 5
    >>> a = np.zeros((6, 6), int); a[0:4, 0:4] = 1
    >>> b = np.zeros((6, 6), int); b[0:4, 1:4] = 2
    >>> oracle_pick({"u": a, "m": b}, gt)[1][["engine", "predicted_iou"]].values.tolist()
    [['m', 1.0]]
    """
    rows = []
    for engine, lab in labels.items():
        t = candidate_targets(lab, truth)
        rows.append(pd.DataFrame({"engine": engine, "label": t.index.to_numpy(), "true_iou": t.to_numpy()}))
    table = pd.concat(rows, ignore_index=True)
    return pick(labels, table, score="true_iou", min_iou=min_iou, nms_iou=nms_iou)


def ensemble_field(labels: dict, picker: Picker, maps=None, scores: dict | None = None, min_iou: float = 0.3,
                   nms_iou: float = 0.3, scale: float = 1.0, field_stats: dict | None = None):
    """Ensemble labels of one field: features of every candidate, predicted IoU, :func:`pick`.

    Parameters
    ----------
    labels, maps, scores
        As :func:`plateseg.ensemble.features.candidate_features`.
    picker : plateseg.ensemble.picker.Picker
    min_iou, nms_iou : float
        As :func:`pick`.
    scale : float
        The zoom of the field before inference (features in the model's pixels, as the picker learnt them).
    field_stats : dict, optional
        The whole field's candidate statistics when the labels are one block of it
        (:func:`plateseg.ensemble.features.field_statistics`).

    Returns
    -------
    labels : numpy.ndarray
    picks : pandas.DataFrame
        As :func:`pick`.

    Examples
    --------
    >>> out, picks = ensemble_field({"unet": np.zeros((4, 4), int)}, picker=None)
    >>> int(out.max()), len(picks)
    (0, 0)
    """
    table = candidate_features(labels, maps, scores, scale=scale, field_stats=field_stats)
    if not len(table):
        shape = np.asarray(next(iter(labels.values()))).shape
        return np.zeros(shape, np.uint32), pick(labels, pd.DataFrame(
            {"engine": [], "label": [], "predicted_iou": []}), min_iou=min_iou, nms_iou=nms_iou)[1]
    table["predicted_iou"] = picker.predict(table)
    return pick(labels, table, min_iou=min_iou, nms_iou=nms_iou)

