"""Snakemake script (rule synth_training): synthetic annotated training images (dsb2018 layout)."""
from plateseg.io.files import atomic_path, setup_logging
from plateseg.io.synth import write_training_set

setup_logging(snakemake.log[0])
p = snakemake.params
with atomic_path(snakemake.output[0]) as tmp:
    write_training_set(tmp, n_images=p.n_images, shape=(p.size, p.size), seed=p.seed)
