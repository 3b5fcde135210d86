"""plateseg.pipeline.train.train_model with ``initial`` (models.source finetune): the fine-tuning trains on the
annotated images at the zoom inference will give their fields, with the checkpoint's crops and augmentation, and
the fine-tuned checkpoint records the scale of the one it started from."""
from __future__ import annotations

import numpy as np
import pytest
import tifffile

torch = pytest.importorskip("torch")


def _discs(shape, radius, spacing):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    lab = np.zeros(shape, np.uint16)
    k = 0
    for cy in range(spacing // 2, shape[0] - radius, spacing):
        for cx in range(spacing // 2, shape[1] - radius, spacing):
            k += 1
            lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2] = k
    return lab


def test_finetuning_trains_at_the_inference_zoom_and_keeps_the_start_scale(tmp_path, monkeypatch):
    from plateseg.engines import unet
    from plateseg.engines.scale import median_diameter, model_scale
    from plateseg.pipeline.train import train_model

    folder = tmp_path / "annotations"
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True)
    for k in range(2):  # nuclei ~6 px across: outside the 24-28 px (x0.9-1.1) the start model covers
        lab = _discs((64, 64), 3, 12)
        tifffile.imwrite(folder / "images" / f"im{k}.tif", ((lab > 0) * 1000 + 100 + k).astype(np.uint16))
        tifffile.imwrite(folder / "masks" / f"im{k}.tif", lab)
    start = unet.UNetParams.coerce({"encoder_depth": 3, "decoder_channels": [8, 8, 8], "crop_size": 32,
                                    "scale_range": [0.9, 1.1]})
    initial = tmp_path / "start.pt"
    unet.save_checkpoint(initial, unet._model_from_arch(unet._arch(start)),
                         unet.checkpoint_meta(start, nucleus_diameter=26.0, nucleus_diameter_range=[24.0, 28.0]))
    seen = {}

    def fake_train(images, masks, params, **kw):
        seen.update(images=images, masks=masks, params=unet.UNetParams.coerce(params))
        model = unet._model_from_arch(unet._arch(seen["params"]))
        model.load_state_dict(kw["initial_weights"])
        return model.eval(), [{"epoch": 1, "loss": 0.0, "steps": 1}]

    monkeypatch.setattr(unet, "train_unet", fake_train)
    settings = {"crop_size": 64, "scale_range": [0.8, 1.25], "lr": 1e-4, "epochs": 1, "device": "cpu"}
    meta = train_model("unet", folder, tmp_path / "tuned.pt", settings, initial=initial)
    # trained on the images zoomed into the model's sizes, as estimate_scale zooms such fields
    for image, mask in zip(seen["images"], seen["masks"]):
        assert image.shape[-2:] == mask.shape and mask.shape[0] > 64 * 3
        assert 24.0 * 0.9 <= median_diameter(mask) <= 28.0 * 1.1
    # with the checkpoint's crops and augmentation, the config's schedule
    assert (seen["params"].crop_size, seen["params"].scale_range, seen["params"].lr) == (32, (0.9, 1.1), 1e-4)
    # the fine-tuned checkpoint is zoomed at inference as the start one
    assert model_scale(meta) == model_scale(unet.load_checkpoint(initial, "cpu")[1])
    # segmentation.rescale none: inference does not zoom, so neither does fine-tuning
    train_model("unet", folder, tmp_path / "tuned2.pt", settings, initial=initial, rescale="none")
    assert all(m.shape == (64, 64) for m in seen["masks"])
