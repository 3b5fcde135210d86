"""Comparing segmentation methods on annotated images: each engine, the ensemble and the oracle."""
from __future__ import annotations

import numpy as np
import pandas as pd

from plateseg.ensemble.pick import pick

__all__ = ["compare_methods"]


def compare_methods(table: pd.DataFrame, labels: dict, truths: dict, extra: dict | None = None,
                    min_iou: float = 0.3, nms_iou: float = 0.3, max_covered: float = 0.5):
    """Each engine alone, the ensemble and the oracle (and ``extra`` methods) on annotated images.

    Parameters
    ----------
    table : pandas.DataFrame
        Candidates of the images (:func:`field_candidates` with ``image``, ``iou`` and the
        picker's ``predicted_iou``, predicted by a picker that did not train on the image).
    labels : dict
        image id -> {engine: label image}.
    truths : dict
        image id -> true labels.
    extra : dict, optional
        method name -> {image id: label image} (e.g. the classical baseline).
    min_iou, nms_iou, max_covered : float
        The ensemble's and the oracle's picking (:func:`plateseg.ensemble.pick.pick`).

    Returns
    -------
    summary : pandas.DataFrame
        One row per method: :func:`plateseg.evaluation.metrics.evaluate_dataset` summary (DSB mAP, COCO AP,
        AP50, AP75, Dice, precision/recall at 0.7, over/under-segmentation, ...), ``share_<engine>``
        (share of the kept objects from each engine, ensemble and oracle) and, for the ensemble,
        ``iou_pearson`` / ``iou_spearman`` between predicted and true IoU of all candidates.
    per_image : dict
        method -> per-image DataFrame.

    Examples
    --------
    >>> from plateseg.ensemble.features import field_candidates
    >>> gt = np.zeros((8, 8), int); gt[1:5, 1:5] = 1
    >>> labs = {"unet": gt.copy(), "maskrcnn": np.zeros((8, 8), int)}
    >>> table = field_candidates(labs, truth=gt).assign(image="a")
    >>> table["predicted_iou"] = table["iou"]
    >>> summary, _ = compare_methods(table, {"a": labs}, {"a": gt})
    >>> summary[["method", "mean_dsb_map"]].values.tolist()
    [['unet', 1.0], ['maskrcnn', 0.0], ['ensemble', 1.0], ['oracle', 1.0]]
    """
    from scipy.stats import pearsonr, spearmanr

    from plateseg.evaluation.metrics import evaluate_dataset

    ids = list(truths)
    engines = list(labels[ids[0]])
    gts = [truths[i] for i in ids]
    by_image = {i: t for i, t in table.groupby("image")}
    empty = table.iloc[:0]
    preds = {e: ([labels[i][e] for i in ids], []) for e in engines}
    for i in ids:
        t = by_image.get(i, empty)
        for e in engines:
            te = t[t["engine"] == e]
            col = "score" if te["score"].notna().all() and len(te) else "fg_mean"
            preds[e][1].append(dict(zip(te["label"].astype(int), te[col].astype(float))))
    methods = dict(preds)
    for name, per in (extra or {}).items():
        methods[name] = ([per[i] for i in ids], None)
    shares = {}
    for name, score in (("ensemble", "predicted_iou"), ("oracle", "iou")):
        outs, scs, kept = [], [], []
        for i in ids:
            out, picks = pick(labels[i], by_image.get(i, empty), score=score, min_iou=min_iou, nms_iou=nms_iou,
                               max_covered=max_covered)
            outs.append(out)
            scs.append(dict(zip(picks["label"].astype(int), picks["predicted_iou"].astype(float))))
            kept.append(picks["engine"])
        methods[name] = (outs, scs)
        kept = pd.concat(kept) if kept else pd.Series(dtype=object)
        shares[name] = {f"share_{e}": float((kept == e).mean()) if len(kept) else np.nan for e in engines}
    rows, per_image = [], {}
    for name, (pr, sc) in methods.items():
        df, summary = evaluate_dataset(gts, pr, scores=sc, names=ids, tie="gt")
        per_image[name] = df
        rows.append({"method": name, **summary, **shares.get(name, {})})
    out = pd.DataFrame(rows)
    ok = table[["iou", "predicted_iou"]].dropna()
    if len(ok) > 2:
        out.loc[out["method"] == "ensemble", "iou_pearson"] = float(pearsonr(ok["predicted_iou"], ok["iou"]).statistic)
        out.loc[out["method"] == "ensemble", "iou_spearman"] = float(spearmanr(ok["predicted_iou"], ok["iou"]).statistic)
    return out, per_image
