# The ensemble (seed 004): out-of-fold candidates of both engines -> LightGBM picker -> best candidate per nucleus.


rule oof_candidates:
    """Fold k's U-Net and Mask R-CNN predict the annotated images of fold k (unseen in their training); every
    candidate mask gets its features and its IoU with the best-matching true nucleus."""
    input:
        unpack(oof_inputs),
    output:
        table="results/models/picker/candidates_{fold}.parquet",
        labels="results/models/picker/candidates_{fold}.npz",
    params:
        annotations=training_annotations(),
        tile_size=config["tiling"]["tile_size"],
        halo=config["tiling"]["halo"],
        batch_size=config["inference"]["batch_size"],
        watershed=watershed_settings(config),
        detection=maskrcnn_detection(config),
        code=script_code("oof_candidates"),
    log:
        "logs/training/oof_candidates_{fold}.log",
    threads: 2
    resources:
        mem_mb=mem_mb(4000),
        runtime=120,
        gpu=1,
    conda:
        CONDA_ENV
    script:
        "../scripts/oof_candidates.py"


rule train_picker:
    """LightGBM picker on the out-of-fold candidates of every fold: averaged boosters, feature importances."""
    input:
        candidates=expand("results/models/picker/candidates_{fold}.parquet", fold=FOLDS),
    output:
        picker="results/models/picker/picker.json",
        importances="results/models/picker/importances.csv",
        figure=report("results/models/picker/importances.png", caption="../report/importances.rst", category="Ensemble"),
    params:
        picker=picker_settings(config),
        code=script_code("train_picker"),
    log:
        "logs/training/train_picker.log",
    threads: 1
    resources:
        mem_mb=mem_mb(4000),
        runtime=60,
    conda:
        CONDA_ENV
    script:
        "../scripts/train_picker.py"


rule cross_validate_ensemble:
    """Classical baseline, U-Net, Mask R-CNN, ensemble and oracle on the annotated images, each image scored by
    engines and a picker that did not train on it."""
    input:
        candidates=expand("results/models/picker/candidates_{fold}.parquet", fold=FOLDS),
        labels=expand("results/models/picker/candidates_{fold}.npz", fold=FOLDS),
        annotations=training_annotation_files,
    output:
        summary=report("results/models/picker/cv_metrics.csv", caption="../report/ensemble_cv.rst", category="Ensemble"),
        candidates="results/models/picker/cv_candidates.parquet",
    params:
        annotations=training_annotations(),
        picker=picker_settings(config),
        classical=classical_settings(config),
        min_iou=config["ensemble"]["min_iou"],
        nms_iou=config["ensemble"]["nms_iou"],
        code=script_code("cross_validate_ensemble"),
    log:
        "logs/training/cross_validate_ensemble.log",
    threads: 1
    resources:
        mem_mb=mem_mb(4000),
        runtime=60,
    conda:
        CONDA_ENV
    script:
        "../scripts/cross_validate_ensemble.py"


rule pick:
    """Ensemble labels of a well: predicted IoU of every U-Net and Mask R-CNN candidate, greedy non-maximum
    suppression; picks.parquet records each kept object's engine and predicted IoU."""
    input:
        maps="results/{plate}/{well}/unet.zarr",
        unet="results/{plate}/{well}/unet_labels.zarr",
        maskrcnn="results/{plate}/{well}/maskrcnn.zarr",
        maskrcnn_table="results/{plate}/{well}/maskrcnn.parquet",
        picker=picker_file(),
    output:
        labels=directory("results/{plate}/{well}/ensemble.zarr"),
        picks="results/{plate}/{well}/picks.parquet",
    params:
        min_iou=config["ensemble"]["min_iou"],
        nms_iou=config["ensemble"]["nms_iou"],
        tile_size=config["tiling"]["tile_size"],
        pixel_size=config["pixel_size"],
        block_size=config["tiling"]["block_size"],
        block_halo=config["tiling"]["block_halo"],
        code=script_code("pick"),
    log:
        "logs/{plate}/{well}/pick.log",
    threads: 1
    resources:
        mem_mb=mem_mb(3000, per_thread=BLOCK_THREAD_MB),
        runtime=30,
    conda:
        CONDA_ENV
    script:
        "../scripts/pick.py"
