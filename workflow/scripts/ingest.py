"""Snakemake script (rule ingest): one well's raw TIFFs -> OME-Zarr well image (params.files: [field, channel,
path] per file, plus the plane when z-stacks are projected, plus the file's channel for files of several channels)."""
from plateseg.io.ingest import ingest_well
from plateseg.io.files import setup_logging

setup_logging(snakemake.log[0])
p = snakemake.params
keys = ("field", "channel", "path", "plane", "file_channel")
ingest_well([dict(zip(keys, row)) for row in p.files], dict(p.channels), snakemake.output[0],
            tile_size=p.tile_size, pixel_size=p.pixel_size, attrs={**p.metadata, "source_files": p.files}, z_projection=p.z_projection)
