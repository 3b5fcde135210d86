"""Quality-control figures: plate heat maps of per-well summaries."""
from __future__ import annotations

import logging

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from plateseg.io.files import atomic_path  # noqa: E402

__all__ = ["plate_grid", "qc_flags", "plate_heatmaps", "importance_figure"]

# per-well QC columns of the summary (plateseg.measure.summarize) and how a flagged well is marked
QC_COLUMNS = {"Metadata_QC_EmptyFields": "empty", "Metadata_QC_SaturatedFields": "saturated"}

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
    """
    flags = {}
    for r in summary.to_dict("records"):
        parts = [f"{int(r[c])} {name} field{'s' if int(r[c]) != 1 else ''}" for c, name in QC_COLUMNS.items()
                 if c in r and pd.notna(r[c]) and int(r[c]) > 0]
        if parts:
            flags[r["Metadata_Well"]] = ", ".join(parts)
    return flags


def plate_heatmaps(summary: pd.DataFrame, channels: list[str], out) -> None:
    """Write a PNG with plate heat maps of the nucleus count and each channel's mean intensity; wells with QC
    flags (:func:`qc_flags`) are outlined in red and listed under the maps."""
    flags = qc_flags(summary)
    panels = [("Count_Nuclei", "Nuclei per well")]
    panels += [
        (f"Mean_Nuclei_Intensity_MeanIntensity_{ch}", f"Mean {ch} intensity in nuclei")
        for ch in channels
        if f"Mean_Nuclei_Intensity_MeanIntensity_{ch}" in summary.columns
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.5), squeeze=False)
    for ax, (col, title) in zip(axes[0], panels):
        grid, rows, cols = plate_grid(summary, col)
        im = ax.imshow(grid, cmap="viridis")
        ax.set_xticks(range(len(cols)), [str(c) for c in cols])
        ax.set_yticks(range(len(rows)), rows)
        ax.set_title(title)
        for (i, j), v in np.ndenumerate(grid):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.0f}", ha="center", va="center", color="w", fontsize=8)
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
    fig.tight_layout(rect=(0, 0.06 if flags else 0, 1, 1))
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
