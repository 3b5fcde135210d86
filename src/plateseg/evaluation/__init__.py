"""Scores against ground truth: the metrics as pure functions (``metrics``) and the evaluation of label stores
(``evaluate``)."""
