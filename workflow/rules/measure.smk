rule measure:
    """What the well's final labels give, in one job: one row per object (location, shape, per-channel intensity),
    the per-well CSVs -- the profile (pycytominer aggregate: median per feature) and the summary (counts,
    mean/median/SD), both with the well's QC columns (pixel QC of the image, seam QC of the final labels' blocks)
    -- and the report's picture of the well (its first field with the final contours, coloured by the engine that
    drew them)."""
    input:
        unpack(measure_inputs),
    output:
        objects="results/{plate}/{well}/objects.parquet",
        profile="results/{plate}/wells/{well}.csv",
        summary="results/{plate}/wells/{well}_summary.csv",
        thumbnail=report(
            "results/{plate}/qc/wells/{well}.png",
            caption="../report/well_thumbnail.rst",
            category="Wells",
            subcategory="{plate}",
            labels={"plate": "{plate}", "well": "{well}"},
        ),
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
