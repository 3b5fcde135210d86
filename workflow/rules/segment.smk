rule segment_classical:
    """Classical baseline: smoothing, global threshold, distance-transform watershed, size filter."""
    input:
        image="results/{plate}/{well}/image.zarr",
    output:
        directory("results/{plate}/{well}/classical.zarr"),
    params:
        channel=list(config["channels"]["names"]).index(config["channels"]["nuclear"]),
        settings=canonical(config["segmentation"]["classical"]),
        tile_size=config["tiling"]["tile_size"],
        pixel_size=config["pixel_size"],
        code=code_hash("plateseg.segment.classical", "plateseg.io.ngff", "plateseg.io.files"),
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


rule infer_unet:
    """U-Net maps (foreground, boundary, centre) of every field of a well, tile by tile with a halo, blended
    with a smooth window; a killed job resumes at its first unwritten tile (partial store unet.zarr.partial)."""
    input:
        image="results/{plate}/{well}/image.zarr",
        model=model_checkpoint("unet"),
    output:
        directory("results/{plate}/{well}/unet.zarr"),
    params:
        channel=list(config["channels"]["names"]).index(config["channels"]["nuclear"]),
        tile_size=config["tiling"]["tile_size"],
        halo=config["tiling"]["halo"],
        batch_size=config["inference"]["batch_size"],
        pixel_size=config["pixel_size"],
        code=code_hash(*UNET_MODULES, "plateseg.pipeline.infer", "plateseg.io.ngff", "plateseg.io.files"),
    log:
        "logs/{plate}/{well}/infer_unet.log",
    threads: 1
    resources:
        mem_mb=mem_mb(3000),
        runtime=60,
        gpu=1,
    conda:
        CONDA_ENV
    script:
        "../scripts/infer_unet.py"


rule infer_maskrcnn:
    """Mask R-CNN instances of every field of a well, tile by tile with a halo: an instance belongs to the tile
    whose core holds its centroid, overlapping masks are resolved to the nearest centroid; a killed job resumes
    at its first unwritten tile (partial store maskrcnn.zarr.partial)."""
    input:
        image="results/{plate}/{well}/image.zarr",
        model=model_checkpoint("maskrcnn"),
    output:
        labels=directory("results/{plate}/{well}/maskrcnn.zarr"),
        table="results/{plate}/{well}/maskrcnn.parquet",
    params:
        channel=list(config["channels"]["names"]).index(config["channels"]["nuclear"]),
        tile_size=config["tiling"]["tile_size"],
        halo=config["tiling"]["halo"],
        batch_size=config["inference"]["batch_size"],
        settings=canonical({k: config["maskrcnn"][k] for k in MASKRCNN_INFERENCE_KEYS}),
        pixel_size=config["pixel_size"],
        code=code_hash(*MASKRCNN_MODULES, "plateseg.pipeline.infer", "plateseg.io.ngff", "plateseg.io.files"),
    log:
        "logs/{plate}/{well}/infer_maskrcnn.log",
    threads: 1
    resources:
        mem_mb=mem_mb(4000),
        runtime=60,
        gpu=1,
    conda:
        CONDA_ENV
    script:
        "../scripts/infer_maskrcnn.py"


rule watershed:
    """Instances from the U-Net maps of a well by marker-controlled watershed (markers from config; with
    markers 'points' the centroids of the well's Mask R-CNN instances)."""
    input:
        unpack(watershed_inputs),
    output:
        directory("results/{plate}/{well}/unet_labels.zarr"),
    params:
        settings=watershed_settings(),
        tile_size=config["tiling"]["tile_size"],
        pixel_size=config["pixel_size"],
        code=code_hash("plateseg.segment.watershed", "plateseg.io.ngff", "plateseg.io.files"),
    log:
        "logs/{plate}/{well}/watershed.log",
    threads: 1
    resources:
        mem_mb=mem_mb(2000),
        runtime=30,
    conda:
        CONDA_ENV
    script:
        "../scripts/watershed.py"
