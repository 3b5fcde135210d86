"""Compare the demo plate's per-well nucleus counts with the synthetic ground truth.

Run after the demo (`make demo`):  .venv/bin/python bench/demo_counts.py [results/DEMO resources/demo]
Prints a Markdown table (well, counted, true, error %) and the evaluation summary; exits 1 if any
well is off by more than 10%.
"""
import sys
from pathlib import Path

import pandas as pd

results = Path(sys.argv[1] if len(sys.argv) > 1 else "results/DEMO")
demo = Path(sys.argv[2] if len(sys.argv) > 2 else "resources/demo")
summary = pd.read_csv(results / "plate_summary.csv")
truth = pd.read_csv(demo / "groundtruth" / "truth.csv").groupby("well")["n_nuclei"].sum()
table = summary[["Metadata_Well", "Count_Nuclei"]].copy()
table["true"] = table["Metadata_Well"].map(truth)
table["error_%"] = (100 * (table["Count_Nuclei"] - table["true"]) / table["true"]).round(1)
print(table.to_markdown(index=False) if hasattr(table, "to_markdown") else table.to_string(index=False))
for ev in sorted((results / "evaluation").glob("*.csv")):
    if not ev.stem.endswith("_fields"):
        row = pd.read_csv(ev).iloc[0]
        keys = ["mean_dsb_map", "coco_AP", "mean_f1_50", "pooled_precision_70", "pooled_recall_70", "mean_dice", "total_over", "total_under"]
        print(f"\n{ev.stem}: " + ", ".join(f"{k}={row[k]:.3f}" if isinstance(row[k], float) else f"{k}={row[k]}" for k in keys))
worst = table["error_%"].abs().max()
print(f"\nworst well count error: {worst:.1f}%")
sys.exit(0 if worst <= 10 else 1)
