# tiny plate-level rules run on the submitting node, not as cluster jobs
localrules:
    plate_summary,
    plate_qc,
    training_curves,


rule plate_summary:
    """All wells of a plate in two tables, one row per well: the profiles and the summary."""
    input:
        profiles=plate_well_profiles,
        summaries=plate_well_summaries,
    output:
        profiles=report(
            "results/{plate}/profiles.csv",
            caption="../report/profiles.rst",
            category="Plate",
        ),
        summary=report(
            "results/{plate}/plate_summary.csv",
            caption="../report/plate_summary.rst",
            category="Plate",
        ),
    params:
        code=script_code("plate_summary"),
    log:
        "logs/{plate}/plate_summary.log",
    threads: 1
    resources:
        mem_mb=mem_mb(1000),
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../scripts/plate_summary.py"


rule plate_qc:
    """Plate heat maps of nucleus counts and mean marker intensity per well."""
    input:
        "results/{plate}/plate_summary.csv",
    output:
        report(
            "results/{plate}/qc/plate_counts.png",
            caption="../report/plate_counts.rst",
            category="QC",
        ),
    params:
        channels=list(config["channels"]["names"].values()),
        code=script_code("plate_qc"),
    log:
        "logs/{plate}/plate_qc.log",
    threads: 1
    resources:
        mem_mb=mem_mb(1000),
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../scripts/plate_qc.py"


rule evaluate:
    """Score a label set of every well of a plate against the ground truth (DESIGN.md section 5 metrics)."""
    input:
        labels=plate_label_stores,
        groundtruth=groundtruth_files,
    output:
        fields="results/{plate}/evaluation/{labelset}_fields.csv",
        summary=report(
            "results/{plate}/evaluation/{labelset}.csv",
            caption="../report/evaluation.rst",
            category="Evaluation",
        ),
    params:
        groundtruth=groundtruth_table,
        code=script_code("evaluate"),
    log:
        "logs/{plate}/evaluate_{labelset}.log",
    threads: 1
    resources:
        mem_mb=mem_mb(2000),
        runtime=30,
    conda:
        CONDA_ENV
    script:
        "../scripts/evaluate.py"


rule training_curves:
    """Training curves (loss terms per epoch) of the engines the run uses, trained here or shipped."""
    input:
        unpack(used_checkpoints),
    output:
        report("results/qc/training_curves.png", caption="../report/training_curves.rst", category="Models"),
    params:
        code=script_code("training_curves"),
    log:
        "logs/training_curves.log",
    threads: 1
    resources:
        mem_mb=mem_mb(2000),
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../scripts/training_curves.py"
