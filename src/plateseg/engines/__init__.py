"""The deep-learning engines; torch is imported only from here down: runtime (devices, seeds, AMP,
checkpoint files), the shared engine base (settings, crop dataset, training loop, checkpoints), normalisation,
the U-Net (and its targets) and the Mask R-CNN."""
