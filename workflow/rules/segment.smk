rule segment_classical:
    """Classical baseline: smoothing, global threshold, distance-transform watershed, size filter."""
    input:
        image="results/{plate}/{well}/image.zarr",
    output:
        directory("results/{plate}/{well}/classical.zarr"),
    params:
        channel=list(config["channels"]["names"]).index(config["channels"]["nuclear"]),
        settings=classical_settings(config),
        tile_size=config["tiling"]["tile_size"],
        pixel_size=config["pixel_size"],
        block_size=config["tiling"]["block_size"],
        block_halo=config["tiling"]["block_halo"],
        code=script_code("segment_classical"),
    log:
        "logs/{plate}/{well}/segment_classical.log",
    threads: 1
    resources:
        mem_mb=mem_mb(2000, per_thread=BLOCK_THREAD_MB),
        runtime=30,
    conda:
        CONDA_ENV
    script:
        "../scripts/segment_classical.py"


rule estimate_scale:
    """Per field the nucleus diameter (first pass of an engine on the central crop) and the zoom to the
    model's scale (segmentation.rescale); both engines' inference reads it."""
    input:
        unpack(scale_inputs),
    output:
        "results/{plate}/{well}/scale.json",
    params:
        rescale=config["segmentation"]["rescale"],
        engine=scale_engine(),
        channel=list(config["channels"]["names"]).index(config["channels"]["nuclear"]),
        tile_size=config["tiling"]["tile_size"],
        halo=config["tiling"]["halo"],
        batch_size=config["inference"]["batch_size"],
        pixel_size=config["pixel_size"],
        code=script_code("estimate_scale"),
    log:
        "logs/{plate}/{well}/estimate_scale.log",
    threads: 1
    resources:
        mem_mb=mem_mb(2000),
        runtime=30,
        gpu=1,
    conda:
        CONDA_ENV
    script:
        "../scripts/estimate_scale.py"


rule infer_unet:
    """U-Net maps (foreground, boundary, centre) of every field of a well, tile by tile with a halo, blended
    with a smooth window; a killed job resumes at its first unwritten tile (partial store unet.zarr.partial)."""
    input:
        image="results/{plate}/{well}/image.zarr",
        model=model_checkpoint("unet"),
        scale="results/{plate}/{well}/scale.json",
    output:
        directory("results/{plate}/{well}/unet.zarr"),
    params:
        engine="unet",
        channel=list(config["channels"]["names"]).index(config["channels"]["nuclear"]),
        tile_size=config["tiling"]["tile_size"],
        halo=config["tiling"]["halo"],
        batch_size=config["inference"]["batch_size"],
        pixel_size=config["pixel_size"],
        code=script_code("infer"),
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
        "../scripts/infer.py"


rule infer_maskrcnn:
    """Mask R-CNN instances of every field of a well, tile by tile with a halo: an instance belongs to the tile
    whose core holds its centroid, overlapping masks are resolved to the nearest centroid; a killed job resumes
    at its first unwritten tile (partial store maskrcnn.zarr.partial)."""
    input:
        image="results/{plate}/{well}/image.zarr",
        model=model_checkpoint("maskrcnn"),
        scale="results/{plate}/{well}/scale.json",
    output:
        labels=directory("results/{plate}/{well}/maskrcnn.zarr"),
        table="results/{plate}/{well}/maskrcnn.parquet",
    params:
        engine="maskrcnn",
        channel=list(config["channels"]["names"]).index(config["channels"]["nuclear"]),
        tile_size=config["tiling"]["tile_size"],
        halo=config["tiling"]["halo"],
        batch_size=config["inference"]["batch_size"],
        settings=maskrcnn_detection(config),
        pixel_size=config["pixel_size"],
        code=script_code("infer"),
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
        "../scripts/infer.py"


rule watershed:
    """Instances from the U-Net maps of a well by marker-controlled watershed (markers from config; with
    markers 'points' the centroids of the well's Mask R-CNN instances)."""
    input:
        unpack(watershed_inputs),
    output:
        directory("results/{plate}/{well}/unet_labels.zarr"),
    params:
        settings=watershed_settings(config),
        tile_size=config["tiling"]["tile_size"],
        pixel_size=config["pixel_size"],
        block_size=config["tiling"]["block_size"],
        block_halo=config["tiling"]["block_halo"],
        code=script_code("watershed"),
    log:
        "logs/{plate}/{well}/watershed.log",
    threads: 1
    resources:
        mem_mb=mem_mb(2000, per_thread=BLOCK_THREAD_MB),
        runtime=30,
    conda:
        CONDA_ENV
    script:
        "../scripts/watershed.py"


rule segment_cells:
    """Cells grown from the well's final nuclei on the cell stain (cells.*), and their cytoplasm."""
    input:
        image="results/{plate}/{well}/image.zarr",
        nuclei=final_labels,
    output:
        cells=directory("results/{plate}/{well}/cells.zarr"),
        cytoplasm=directory("results/{plate}/{well}/cytoplasm.zarr"),
    params:
        channel=list(config["channels"]["names"]).index(config["cells"]["channel"]) if CELLS else None,
        settings=cell_settings(config) if CELLS else {},
        tile_size=config["tiling"]["tile_size"],
        pixel_size=config["pixel_size"],
        block_size=config["tiling"]["block_size"],
        block_halo=config["tiling"]["block_halo"],
        code=script_code("segment_cells"),
    log:
        "logs/{plate}/{well}/segment_cells.log",
    threads: 1
    resources:
        mem_mb=mem_mb(2000, per_thread=BLOCK_THREAD_MB),
        runtime=30,
    conda:
        CONDA_ENV
    script:
        "../scripts/segment_cells.py"
