"""Per-object measurements (``objects``), per-well and per-plate summaries (``summarize``) and QC figures
(``qc``). No torch."""
