"""Agreement of two segmentations of one field: block-by-block labels against the whole field's.

:func:`label_agreement` is the seam check of big-image segmentation (issue 16): objects of the
``reference`` (the whole field labelled at once) matched one-to-one by ``labels`` (the same labeller
run block by block) at a high IoU, and the two failures of block processing counted apart: an object
*split* (two or more pieces, e.g. claimed by two blocks or cut at a seam) and an *extra* object (one
that matches nothing, e.g. a duplicate or a fragment).
"""
from __future__ import annotations

import numpy as np

from plateseg.evaluation.matching import check_pair, overlap

__all__ = ["label_agreement"]


def label_agreement(reference, labels, iou: float = 0.9, piece: float = 0.1) -> dict:
    """How far ``labels`` agrees with ``reference``, object by object.

    Parameters
    ----------
    reference, labels : (H, W) integer arrays
        Instance labels of the same field (0 background).
    iou : float
        A reference object is *matched* when one object of ``labels`` has at least this IoU with it
        (above 0.5 such a partner is unique).
    piece : float
        A reference object is *split* when two or more objects of ``labels`` each cover at least this
        fraction of it; an object of ``labels`` is *extra* when its best IoU with any reference object
        is under 0.5 (a duplicate, a fragment or a spurious object).

    Returns
    -------
    dict
        ``n_reference``, ``n_labels``, ``matched``, ``matched_fraction`` (of the reference objects),
        ``split``, ``extra``.

    Examples
    --------
    >>> ref = np.zeros((4, 8), int); ref[:, 0:4] = 1; ref[:, 5:8] = 2
    >>> cut = ref.copy(); cut[:, 2:4] = 3  # object 1 cut in two at a seam
    >>> d = label_agreement(ref, cut)
    >>> d["matched"], d["split"], d["extra"]
    (1, 1, 0)
    """
    ov = overlap(*check_pair(np.asarray(reference), np.asarray(labels)))
    best_ref = np.zeros(ov.n_gt)
    best_lab = np.zeros(ov.n_pred)
    np.maximum.at(best_ref, ov.gi, ov.iou)
    np.maximum.at(best_lab, ov.pj, ov.iou)
    pieces = np.bincount(ov.gi[ov.inter >= piece * ov.gt_area[ov.gi]], minlength=ov.n_gt)
    matched = int((best_ref >= iou).sum())
    return {"n_reference": ov.n_gt, "n_labels": ov.n_pred, "matched": matched,
            "matched_fraction": matched / ov.n_gt if ov.n_gt else 1.0,
            "split": int((pieces >= 2).sum()), "extra": int((best_lab < 0.5).sum())}
