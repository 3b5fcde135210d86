# Training branch (models.source train, or finetune: the same rules starting from the set's weights): annotated
# images -> grouped folds -> U-Net and Mask R-CNN per fold and on all data.


rule synth_training:
    """Synthetic annotated images (dsb2018 layout) for training when no annotations are configured."""
    output:
        directory("results/training/synthetic"),
    params:
        n_images=config["training"]["synthetic"]["n_images"],
        size=config["training"]["synthetic"]["size"],
        seed=config["training"]["synthetic"]["seed"],
        code=script_code("synth_training"),
    log:
        "logs/training/synth_training.log",
    threads: 1
    resources:
        mem_mb=mem_mb(1000),
        runtime=30,
    conda:
        CONDA_ENV
    script:
        "../scripts/synth_training.py"


rule folds:
    """Grouped k-fold split of the annotated images (near-duplicate crops stay in one fold)."""
    input:
        training_annotation_files,
    output:
        "results/training/folds.csv",
    params:
        annotations=training_annotations(),
        k=config["training"]["folds"],
        seed=config["training"]["seed"],
        group_distance=config["training"]["group_distance"],
        code=script_code("folds"),
    log:
        "logs/training/folds.log",
    threads: 1
    resources:
        mem_mb=mem_mb(2000),
        runtime=30,
    conda:
        CONDA_ENV
    script:
        "../scripts/folds.py"


rule train_unet:
    """Train a U-Net on every annotated image (from scratch, or from the set's U-Net with models.source finetune):
    the model inference uses."""
    input:
        annotations=training_annotation_files,
        initial=initial_checkpoint("unet"),
    output:
        "results/models/unet/all.pt",
    params:
        engine="unet",
        annotations=training_annotations(),
        initial=initial_checkpoint("unet") or None,
        rescale=finetune_rescale(),
        settings=engine_settings(config, "unet", "all"),
        code=script_code("train_model"),
    log:
        "logs/training/train_unet_all.log",
    threads: 2
    resources:
        mem_mb=mem_mb(4000),
        runtime=240,
        gpu=1,
    conda:
        CONDA_ENV
    script:
        "../scripts/train_model.py"


rule train_unet_fold:
    """Train a U-Net (from scratch, or fine-tuned) without fold k, validated on fold k every unet.val_every epochs (the
    out-of-fold models of the picker and of cross-validation)."""
    input:
        annotations=training_annotation_files,
        folds="results/training/folds.csv",
        initial=initial_checkpoint("unet"),
    output:
        "results/models/unet/{fold}.pt",
    wildcard_constraints:
        fold="[0-9]+",
    params:
        engine="unet",
        annotations=training_annotations(),
        initial=initial_checkpoint("unet") or None,
        rescale=finetune_rescale(),
        settings=train_params("unet"),
        code=script_code("train_fold"),
    log:
        "logs/training/train_unet_{fold}.log",
    threads: 2
    resources:
        mem_mb=mem_mb(4000),
        runtime=240,
        gpu=1,
    conda:
        CONDA_ENV
    script:
        "../scripts/train_fold.py"


rule train_maskrcnn:
    """Train a Mask R-CNN on every annotated image (from scratch, or from the set's Mask R-CNN with models.source
    finetune): the model inference uses."""
    input:
        annotations=training_annotation_files,
        initial=initial_checkpoint("maskrcnn"),
    output:
        "results/models/maskrcnn/all.pt",
    params:
        engine="maskrcnn",
        annotations=training_annotations(),
        initial=initial_checkpoint("maskrcnn") or None,
        rescale=finetune_rescale(),
        settings=engine_settings(config, "maskrcnn", "all"),
        code=script_code("train_model"),
    log:
        "logs/training/train_maskrcnn_all.log",
    threads: 2
    resources:
        mem_mb=mem_mb(6000),
        runtime=480,
        gpu=1,
    conda:
        CONDA_ENV
    script:
        "../scripts/train_model.py"


rule train_maskrcnn_fold:
    """Train a Mask R-CNN (from scratch, or fine-tuned) without fold k, validated on fold k every maskrcnn.val_every epochs (the
    out-of-fold models of the picker and of cross-validation)."""
    input:
        annotations=training_annotation_files,
        folds="results/training/folds.csv",
        initial=initial_checkpoint("maskrcnn"),
    output:
        "results/models/maskrcnn/{fold}.pt",
    wildcard_constraints:
        fold="[0-9]+",
    params:
        engine="maskrcnn",
        annotations=training_annotations(),
        initial=initial_checkpoint("maskrcnn") or None,
        rescale=finetune_rescale(),
        settings=train_params("maskrcnn"),
        code=script_code("train_fold"),
    log:
        "logs/training/train_maskrcnn_{fold}.log",
    threads: 2
    resources:
        mem_mb=mem_mb(6000),
        runtime=480,
        gpu=1,
    conda:
        CONDA_ENV
    script:
        "../scripts/train_fold.py"


rule choose_model:
    """models.source finetune: keep the fine-tuned model of an engine only where it beats the set's by
    cross-validation on the annotated images (each fine-tuned fold model against the set's model on the fold it did
    not train on); the chosen checkpoint is copied to final.pt, the one inference uses."""
    input:
        unpack(finetune_check_inputs),
    output:
        model="results/models/{engine}/final.pt",
        table="results/models/{engine}/finetune_check.csv",
    wildcard_constraints:
        engine="unet|maskrcnn",
    params:
        annotations=training_annotations(),
        rescale=finetune_rescale(),
        pixel_size=config["training"]["pixel_size"],
        code=script_code("choose_model"),
    log:
        "logs/training/choose_model_{engine}.log",
    threads: 2
    resources:
        mem_mb=mem_mb(4000),
        runtime=60,
        gpu=1,
    conda:
        CONDA_ENV
    script:
        "../scripts/choose_model.py"


rule cross_validate_unet:
    """Held-out metrics of every fold model with the configured tiling and watershed (target:
    `snakemake cross_validate_unet`); the fold models are trained for it."""
    input:
        unpack(cross_validation_inputs),
    output:
        "results/models/unet/cv_metrics.csv",
    params:
        annotations=training_annotations(),
        watershed=watershed_settings(config),
        tile_size=config["tiling"]["tile_size"],
        halo=config["tiling"]["halo"],
        batch_size=config["inference"]["batch_size"],
        code=script_code("cross_validate_unet"),
    log:
        "logs/training/cross_validate_unet.log",
    threads: 2
    resources:
        mem_mb=mem_mb(4000),
        runtime=60,
    conda:
        CONDA_ENV
    script:
        "../scripts/cross_validate_unet.py"
