rule measure:
    """One row per object of the well's final labels: location, shape and per-channel intensity."""
    input:
        unpack(measure_inputs),
    output:
        "results/{plate}/{well}/objects.parquet",
    params:
        metadata=well_metadata,
        code=script_code("measure"),
    log:
        "logs/{plate}/{well}/measure.log",
    threads: 1
    resources:
        mem_mb=mem_mb(2000),
        runtime=30,
    conda:
        CONDA_ENV
    script:
        "../scripts/measure.py"


rule summarize_well:
    """Per-well summary CSV: counts and mean/median/SD of every object feature."""
    input:
        objects="results/{plate}/{well}/objects.parquet",
        image="results/{plate}/{well}/image.zarr",
    output:
        "results/{plate}/wells/{well}.csv",
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
