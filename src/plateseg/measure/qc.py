"""Quality-control figures: plate heat maps of per-well summaries."""
from __future__ import annotations

import logging

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from plateseg.io.files import atomic_path  # noqa: E402

__all__ = ["plate_grid", "qc_flags", "plate_heatmaps", "importance_figure", "ENGINE_COLOURS", "contour_overlay",
           "overlay_figure", "training_curves"]

# per-well QC columns of the summary (plateseg.measure.summarize) and how a flagged well is marked
QC_COLUMNS = {"Metadata_QC_EmptyFields": "empty", "Metadata_QC_SaturatedFields": "saturated"}
QC_WELL_COLUMNS = {"Metadata_QC_LowPredictedIoU": "mean predicted IoU low for the plate"}
# per-well counts of nuclei that flag a well (the seam QC of the summary; raise tiling.block_halo)
QC_NUCLEI_COLUMNS = {"Metadata_QC_NucleiLargerThanHalo": "larger than the block halo"}

log = logging.getLogger(__name__)


def plate_grid(summary: pd.DataFrame, column: str) -> tuple[np.ndarray, list[str], list[int]]:
    """Arrange one per-well value as a (rows, columns) grid; wells not imaged are NaN.

    Examples
    --------
    >>> df = pd.DataFrame({"Metadata_Row": ["A", "B"], "Metadata_Column": [1, 2], "Count_Nuclei": [5, 7]})
    >>> grid, rows, cols = plate_grid(df, "Count_Nuclei")
    >>> grid.tolist(), rows, cols
    ([[5.0, nan], [nan, 7.0]], ['A', 'B'], [1, 2])
    """
    rows = sorted(summary["Metadata_Row"].unique(), key=lambda r: (len(r), r))
    cols = sorted(int(c) for c in summary["Metadata_Column"].unique())
    grid = np.full((len(rows), len(cols)), np.nan)
    for r in summary.itertuples():
        grid[rows.index(r.Metadata_Row), cols.index(int(r.Metadata_Column))] = getattr(r, column)
    return grid, rows, cols


def qc_flags(summary: pd.DataFrame) -> dict:
    """Well -> what its QC columns flag (``"1 empty field, 2 saturated fields"``), for flagged wells only.

    Examples
    --------
    >>> df = pd.DataFrame({"Metadata_Well": ["A01", "A02"], "Metadata_QC_EmptyFields": [0, 1],
    ...                    "Metadata_QC_SaturatedFields": [0, 2]})
    >>> qc_flags(df)
    {'A02': '1 empty field, 2 saturated fields'}
    >>> qc_flags(df.assign(Metadata_QC_LowPredictedIoU=[1, 0]))["A01"]
    'mean predicted IoU low for the plate'
    >>> qc_flags(df.assign(Metadata_QC_NucleiLargerThanHalo=[3, 0]))["A01"]
    '3 nuclei larger than the block halo'
    """
    flags = {}
    for r in summary.to_dict("records"):
        parts = [f"{int(r[c])} {name} field{'s' if int(r[c]) != 1 else ''}" for c, name in QC_COLUMNS.items()
                 if c in r and pd.notna(r[c]) and int(r[c]) > 0]
        parts += [f"{int(r[c])} nucle{'us' if int(r[c]) == 1 else 'i'} {text}" for c, text in QC_NUCLEI_COLUMNS.items()
                  if c in r and pd.notna(r[c]) and int(r[c]) > 0]
        parts += [text for c, text in QC_WELL_COLUMNS.items() if c in r and pd.notna(r[c]) and int(r[c]) > 0]
        if parts:
            flags[r["Metadata_Well"]] = ", ".join(parts)
    return flags


def plate_heatmaps(summary: pd.DataFrame, channels: list[str], out) -> None:
    """Write a PNG with plate heat maps of the nucleus count, each channel's mean intensity and, for the
    ensemble, the mean predicted IoU; wells with QC flags (:func:`qc_flags`) are outlined in red and listed
    under the maps."""
    flags = qc_flags(summary)
    panels = [("Count_Nuclei", "Nuclei per well")]
    panels += [
        (f"Mean_Nuclei_Intensity_MeanIntensity_{ch}", f"Mean {ch} intensity in nuclei")
        for ch in channels
        if f"Mean_Nuclei_Intensity_MeanIntensity_{ch}" in summary.columns
    ]
    if "Metadata_Ensemble_MeanPredictedIoU" in summary.columns:
        panels.append(("Metadata_Ensemble_MeanPredictedIoU", "Mean predicted IoU (picker)"))
        panels.append(("Metadata_Ensemble_FractionUNet", "Share of U-Net masks (picker)"))
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.5 * ncols, 3.5 * nrows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_axis_off()
    for ax, (col, title) in zip(axes.flat, panels):
        grid, rows, cols = plate_grid(summary, col)
        im = ax.imshow(grid, cmap="viridis")
        ax.set_xticks(range(len(cols)), [str(c) for c in cols])
        ax.set_yticks(range(len(rows)), rows)
        ax.set_title(title)
        for (i, j), v in np.ndenumerate(grid):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.0f}" if abs(v) >= 10 else f"{v:.2g}", ha="center", va="center", color="w", fontsize=8)
        for r in summary.itertuples():
            if getattr(r, "Metadata_Well", None) in flags:
                i, j = rows.index(r.Metadata_Row), cols.index(int(r.Metadata_Column))
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
        fig.colorbar(im, ax=ax, shrink=0.8)
    plate = summary["Metadata_Plate"].iloc[0] if "Metadata_Plate" in summary.columns else ""
    fig.suptitle(f"Plate {plate}")
    if flags:
        fig.text(0.01, 0.01, "QC (red outline): " + "; ".join(f"{w} {t}" for w, t in sorted(flags.items())),
                 fontsize=8, color="red", wrap=True)
        for well, text in sorted(flags.items()):
            log.warning("well %s: %s (Metadata_QC_* columns of the per-well CSV)", well, text)
    fig.tight_layout(rect=(0, (0.06 if flags else 0) / nrows, 1, 1))
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    log.info("wrote %s (%s)", out, ", ".join(c for c, _ in panels))


def importance_figure(importances: pd.DataFrame, path, top: int = 25) -> None:
    """Horizontal bar chart of the picker's feature importances (share of the total gain), atomically."""
    df = importances.head(top).iloc[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(df) + 1.2))
    ax.barh(df["feature"], df["gain_share"], color="#4c72b0")
    ax.set_xlabel("share of total gain (mean over boosters)")
    ax.set_title("Ensemble picker: feature importance")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


# contour colour of each engine in the overlays (the ensemble's objects keep the colour of the engine that drew them)
ENGINE_COLOURS = {"unet": (0.0, 0.9, 1.0), "maskrcnn": (1.0, 0.2, 0.8), None: (1.0, 0.9, 0.0)}


def contour_overlay(plane: np.ndarray, labels: np.ndarray, sources: dict | None = None) -> np.ndarray:
    """RGB picture of one channel with every object's contour, coloured by the engine that drew it.

    Parameters
    ----------
    plane : (H, W) array
        The channel shown (grey, 1st-99.8th percentile).
    labels : (H, W) integer array
    sources : dict, optional
        label -> engine (``"unet"`` / ``"maskrcnn"``, :data:`ENGINE_COLOURS`); others are yellow.

    Returns
    -------
    (H, W, 3) uint8 array

    Examples
    --------
    >>> lab = np.zeros((8, 8), int); lab[2:6, 2:6] = 1
    >>> rgb = contour_overlay(np.zeros((8, 8)), lab, {1: "maskrcnn"})
    >>> rgb[2, 2].tolist(), rgb[3, 3].tolist(), rgb[0, 0].tolist()
    ([255, 51, 204], [0, 0, 0], [0, 0, 0])
    """
    from skimage.segmentation import find_boundaries

    p = plane.astype(np.float64)
    lo, hi = np.percentile(p, [1, 99.8]) if p.size else (0, 1)
    grey = np.clip((p - lo) / max(hi - lo, 1e-9), 0, 1)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    edges = find_boundaries(labels, mode="inner") & (labels > 0)
    if edges.any():
        colours = np.array([ENGINE_COLOURS.get((sources or {}).get(int(v)), ENGINE_COLOURS[None])
                            for v in range(int(labels.max()) + 1)])
        rgb[edges] = colours[labels[edges]]
    return np.rint(rgb * 255).astype(np.uint8)


def overlay_figure(panels: list[tuple[str, np.ndarray]], out, title: str = "", legend: bool = False) -> None:
    """Write a PNG of contour overlays (:func:`contour_overlay`) side by side, atomically, with the engines'
    colours as legend."""
    n = max(len(panels), 1)
    fig, axes = plt.subplots(1, n, figsize=(4 * n, 4.4), squeeze=False)
    for ax, (name, rgb) in zip(axes[0], panels):
        ax.imshow(rgb, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_axis_off()
    if legend:
        from matplotlib.patches import Patch

        handles = [Patch(color=ENGINE_COLOURS[e], label=n) for e, n in (("unet", "U-Net"), ("maskrcnn", "Mask R-CNN"))]
        fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.05 if legend else 0, 1, 1))
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def training_curves(histories: dict, out) -> None:
    """Write a PNG of each engine's training curves (loss terms per epoch, and validation scores when recorded),
    atomically.

    Parameters
    ----------
    histories : dict
        Engine name -> the ``history`` of its checkpoint (one dict per epoch: ``epoch``, ``loss``, ``loss_*``,
        optionally ``val_*``).
    out : path-like
    """
    fig, axes = plt.subplots(1, max(len(histories), 1), figsize=(5.5 * max(len(histories), 1), 3.8), squeeze=False)
    for ax, (engine, history) in zip(axes[0], histories.items()):
        df = pd.DataFrame(history)
        if df.empty:
            ax.set_title(f"{engine}: no training history in the checkpoint")
            continue
        x = np.arange(1, len(df) + 1)  # resumed chunks restart their epoch count: number epochs in order
        for col in [c for c in df.columns if c == "loss" or c.startswith("loss_")]:
            ax.plot(x, df[col], label=col, linewidth=2 if col == "loss" else 1)
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(f"{engine}: {len(df)} epochs, {df.get('seconds', pd.Series([0])).sum() / 60:.0f} min")
        vals = [c for c in df.columns if c.startswith("val_") and pd.api.types.is_numeric_dtype(df[c])]
        if vals:
            twin = ax.twinx()
            for col in vals:
                twin.plot(x, df[col], linestyle="--", marker=".", label=col)
            twin.set_ylabel("validation")
            twin.legend(fontsize=7, loc="upper right")
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
