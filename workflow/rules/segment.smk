rule segment_classical:
    """Classical baseline: smoothing, global threshold, distance-transform watershed, size filter."""
    input:
        image="results/{plate}/{well}/image.zarr",
    output:
        directory("results/{plate}/{well}/classical.zarr"),
    params:
        channel=list(config["channels"]["names"]).index(config["channels"]["nuclear"]),
        settings=config["segmentation"]["classical"],
        tile_size=config["tiling"]["tile_size"],
        pixel_size=config["pixel_size"],
        code=code_hash("plateseg.classical", "plateseg.ngff", "plateseg.io"),
    log:
        "logs/{plate}/{well}/segment_classical.log",
    threads: 1
    resources:
        mem_mb=mem_mb(2000),
        runtime=30,
    conda:
        CONDA_ENV
    script:
        "../scripts/segment_classical.py"
