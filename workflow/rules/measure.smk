rule measure:
    """One row per object of the well's final labels: location, shape and per-channel intensity."""
    input:
        unpack(measure_inputs),
    output:
        "results/{plate}/{well}/objects.parquet",
    params:
        metadata=well_metadata,
        block_size=config["tiling"]["block_size"],
        code=script_code("measure"),
    log:
        "logs/{plate}/{well}/measure.log",
    threads: 1
    resources:
        mem_mb=mem_mb(2000, per_thread=BLOCK_THREAD_MB),
        runtime=30,
    conda:
        CONDA_ENV
    script:
        "../scripts/measure.py"


rule summarize_well:
    """Per-well CSVs: the profile (pycytominer aggregate: median per feature) and the summary (counts, mean/median/SD),
    both with the well's QC columns (pixel QC of the image, seam QC of the final labels' blocks)."""
    input:
        objects="results/{plate}/{well}/objects.parquet",
        image="results/{plate}/{well}/image.zarr",
        labels=final_labels,
    output:
        profile="results/{plate}/wells/{well}.csv",
        summary="results/{plate}/wells/{well}_summary.csv",
    params:
        metadata=well_metadata,
        code=script_code("summarize_well"),
    log:
        "logs/{plate}/{well}/summarize_well.log",
    threads: 1
    resources:
        mem_mb=mem_mb(1000),
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../scripts/summarize_well.py"
