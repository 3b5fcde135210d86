"""The ensemble of seed 004: candidate features, the LightGBM picker, greedy NMS picking and the comparison of
methods. No torch."""
