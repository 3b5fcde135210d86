"""Quality-control figures: plate heat maps of per-well summaries."""
from __future__ import annotations

import logging

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from plateseg.io.files import atomic_path  # noqa: E402

__all__ = ["plate_grid", "plate_heatmaps", "importance_figure"]

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


def plate_heatmaps(summary: pd.DataFrame, channels: list[str], out) -> None:
    """Write a PNG with plate heat maps of the nucleus count and each channel's mean intensity."""
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
        fig.colorbar(im, ax=ax, shrink=0.8)
    plate = summary["Metadata_Plate"].iloc[0] if "Metadata_Plate" in summary.columns else ""
    fig.suptitle(f"Plate {plate}")
    fig.tight_layout()
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
