if DEMO:

    rule demo_plate:
        """The synthetic demo plate (config demo.*): CellProfiler-named TIFFs of every well, their ground truth
        and the truth table."""
        output:
            demo_files(config),
        params:
            demo=config["demo"],
            code=script_code("demo_plate"),
        log:
            "logs/demo_plate.log",
        threads: 1
        resources:
            mem_mb=mem_mb(2000),
            runtime=30,
        conda:
            CONDA_ENV
        script:
            "../scripts/demo_plate.py"


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
        z_projection=Z_PROJECT,
        tile_size=config["tiling"]["tile_size"],
        pixel_size=config["pixel_size"],
        code=script_code("ingest"),
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
