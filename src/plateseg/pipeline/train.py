"""What the training rules do: the model of an engine on all annotated images.

It writes its checkpoint atomically and imports no watershed or metrics (fold models and their scores are
:mod:`plateseg.pipeline.validation`).
"""
from __future__ import annotations

import logging

__all__ = ["train_model", "finetune_items"]

log = logging.getLogger(__name__)

# the settings class of each engine module
PARAMS = {"unet": "UNetParams", "maskrcnn": "MaskRCNNParams"}


def train_model(engine: str, annotations, out, settings: dict, threads: int | None = None, fold: str = "all",
                folds=None, validate=None, initial=None, rescale="auto") -> dict:
    """Rules train_unet, train_maskrcnn: train ``engine`` on every annotated image and save its checkpoint
    at ``out`` (the model inference uses).

    With ``fold`` k and the ``folds`` table, it trains without fold k and, with ``validate``, scores fold k
    every ``val_every`` epochs: :func:`plateseg.pipeline.validation.train_fold` does that for the fold models.

    Parameters
    ----------
    engine : {"unet", "maskrcnn"}
        The engine module of :mod:`plateseg.engines`.
    annotations : path-like
        The annotated folder.
    out : path-like
        The checkpoint.
    settings : dict
        The engine's settings (``UNetParams`` / ``MaskRCNNParams`` fields); the device is the job's.
    threads : int, optional
        torch CPU threads.
    fold : str
        ``"all"`` or a fold number.
    folds : pandas.DataFrame, optional
        The fold table (needed unless ``fold`` is ``"all"``).
    validate : callable, optional
        The engine's fold validation (see :func:`plateseg.engines.unet.train_unet`).
    initial : path-like, optional
        Fine-tune this checkpoint (``models.source: finetune``): the model (architecture, targets,
        normalisation) is the checkpoint's, training starts from its weights, and only the training
        settings come from ``settings`` (:func:`plateseg.engines.base.finetune_params`). The annotated images
        are zoomed as inference will zoom their fields for that model (``rescale``,
        :func:`plateseg.engines.scale.training_zooms`), so fine-tuning trains at the scale inference runs at.
    rescale : "auto", "none" or float
        Config ``segmentation.rescale`` (only used with ``initial``).

    Returns
    -------
    dict
        The checkpoint's metadata.
    """
    import importlib

    from plateseg.engines.scale import diameter_record
    from plateseg.io.annotated import data_hash, fold_split, load_annotated
    from plateseg.pipeline.run import torch_device

    module = importlib.import_module(f"plateseg.engines.{engine}")
    params = dict(settings, device=torch_device(threads))
    items, _ = load_annotated(annotations)
    weights, tuned = None, {}
    if initial:
        from plateseg.engines.base import finetune_params

        start, start_meta = module.load_checkpoint(initial, "cpu")
        weights = start.state_dict()
        params = finetune_params(params, start_meta, getattr(module, PARAMS[engine]))
        items, zoomed = finetune_items(items, start_meta, rescale, settings.get("pixel_size"))
        log.info("fine-tuning %s (model, normalisation, crops and augmentation of the checkpoint; training settings "
                 "of the config); annotated images zoomed as inference will (segmentation.rescale %s): %s", initial,
                 rescale, zoomed)
        # a fine-tuned model keeps the nucleus sizes of the model it starts from (its images are zoomed to them)
        tuned = {"finetuned_from": str(initial), "finetuned_from_data_hash": start_meta.get("data_hash"),
                 **{k: start_meta[k] for k in ("nucleus_diameter", "nucleus_diameter_range", "model_set")
                    if k in start_meta}}
    by_id = {image_id: (image, mask) for image_id, image, mask in items}
    train_ids, val_ids = fold_split(list(by_id), folds, str(fold))
    log.info("%s fold %s: %d training images, %d held out (%s)", engine, fold, len(train_ids), len(val_ids), annotations)
    val = ([by_id[i][0] for i in val_ids], [by_id[i][1] for i in val_ids]) if val_ids else None
    # the nucleus sizes it learns (segmentation.rescale auto zooms fields outside them), unless fine-tuned
    extra = {**diameter_record([by_id[i][1] for i in train_ids]), **tuned}
    train = getattr(module, f"train_{engine}")
    model, history = train([by_id[i][0] for i in train_ids], [by_id[i][1] for i in train_ids], params,
                           log=logging.getLogger(f"plateseg.engines.{engine}"), val=val, validate=validate,
                           initial_weights=weights)
    meta = module.checkpoint_meta(params, data_hash=data_hash(annotations), history=history, fold=str(fold),
                                  train_ids=train_ids, val_ids=val_ids, **extra)
    module.save_checkpoint(out, model, meta)
    log.info("checkpoint written to %s", out)
    return meta


def finetune_items(items, meta: dict, rescale="auto", pixel_size: float | None = None) -> tuple:
    """Annotated ``items`` (``(id, image, mask)``) zoomed as inference will zoom their fields for the model of
    ``meta`` (:func:`plateseg.engines.scale.training_zooms`): what fine-tuning that model trains and is scored on.

    Returns the zoomed items and a text of the zooms (``"x1 18 images, x2 2 images"``).

    Examples
    --------
    >>> import numpy as np
    >>> lab = np.zeros((64, 64), int); lab[10:30, 10:30] = 1
    >>> meta = {"nucleus_diameter_range": [10.0, 48.0], "params": {"scale_range": [0.6, 1.6]}}
    >>> out, text = finetune_items([("a", np.ones((1, 64, 64)), lab)], meta)
    >>> out[0][0], out[0][2].shape, text
    ('a', (64, 64), 'x1 1 images')
    """
    from plateseg.engines.scale import training_zooms, zoom_annotated

    zooms = training_zooms([m for _, _, m in items], meta, rescale, pixel_size)
    images, masks = zoom_annotated([i for _, i, _ in items], [m for _, _, m in items], zooms)
    out = [(image_id, image, mask) for (image_id, _, _), image, mask in zip(items, images, masks)]
    return out, ", ".join(f"x{z:g} {zooms.count(z)} images" for z in sorted(set(zooms)))
