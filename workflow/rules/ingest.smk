rule ingest:
    """Convert one well's raw TIFF files into an OME-Zarr well image (one (c, y, x) array per field)."""
    input:
        well_image_files,
    output:
        directory("results/{plate}/{well}/image.zarr"),
    params:
        files=well_image_table,
        metadata=well_metadata,
        channels=config["channels"]["names"],
        tile_size=config["tiling"]["tile_size"],
        pixel_size=config["pixel_size"],
        code=code_hash("plateseg.io.ingest", "plateseg.io.ngff", "plateseg.io.files"),
    log:
        "logs/{plate}/{well}/ingest.log",
    threads: 1
    resources:
        mem_mb=mem_mb(1000),
        runtime=30,
    conda:
        CONDA_ENV
    script:
        "../scripts/ingest.py"
