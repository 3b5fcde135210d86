"""Fixtures shared by the engine tests: small synthetic images and tiny U-Net / Mask R-CNN runs."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from skimage.draw import disk

torch.set_num_threads(1)

# a small U-Net: resnet18 encoder, depth 5, thin decoder
UNET_TINY = dict(encoder_name="resnet18", encoder_depth=5, decoder_channels=(32, 16, 16, 8, 8),
                 crop_size=64, batch_size=4, epochs=8, samples_per_epoch=16, lr=3e-3,
                 warmup_steps=2, val_tile_size=64, val_halo=16, val_every=1, seed=0)
# a full-depth resnet18-FPN with thin heads and few proposals: ~0.3 s per step of 2 crops of 64 px
MASKRCNN_TINY = dict(fpn_channels=32, box_head_dim=128, mask_head_channels=32, crop_size=64,
                     batch_size=2, epochs=3, samples_per_epoch=4, lr=1e-3, warmup_steps=2,
                     scale_range=(1.0, 1.0), rpn_batch_size_per_image=64,
                     box_batch_size_per_image=64, rpn_pre_nms_top_n_train=300,
                     rpn_post_nms_top_n_train=300, rpn_pre_nms_top_n_test=300,
                     rpn_post_nms_top_n_test=300, box_detections_per_img=100, val_tile_size=48,
                     val_halo=16, val_every=1, seed=0)


def make_blobs(seed, shape=(96, 96), n=8, touching=False):
    """uint16 image of bright discs on a noisy background, and its labels.

    ``touching``: discs may overlap earlier ones by up to 20% (the later disc keeps only its free
    pixels), so some touch; otherwise discs never overlap.
    """
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, np.uint16)
    img = np.zeros(shape)
    k = 1
    for _ in range(n * 10):
        if k > n:
            break
        r = rng.uniform(5, 9)
        cy, cx = rng.uniform(r, shape[0] - r), rng.uniform(r, shape[1] - r)
        rr, cc = disk((cy, cx), r, shape=shape)
        taken = lab[rr, cc] > 0
        if (taken.mean() > 0.2) if touching else taken.any():
            continue
        free = ~taken
        lab[rr[free], cc[free]] = k
        img[rr[free], cc[free]] = rng.uniform(0.5, 1.0)
        k += 1
    img = img + rng.normal(0, 0.05, shape)
    return (img * 1000 + 100).clip(0).astype(np.uint16)[None], lab


@pytest.fixture(scope="session")
def blobs():
    """:func:`make_blobs`."""
    return make_blobs


@pytest.fixture(scope="session")
def unet_tiny():
    return dict(UNET_TINY)


@pytest.fixture(scope="session")
def maskrcnn_tiny():
    return dict(MASKRCNN_TINY)


@pytest.fixture(scope="session")
def unet_data():
    """Six 96 px images of touching discs: four to train on, two held out."""
    ims, labs = zip(*[make_blobs(i, touching=True) for i in range(6)])
    return list(ims), list(labs)


@pytest.fixture(scope="session")
def maskrcnn_data():
    """Five 96 px images of separate discs: four to train on, one held out."""
    ims, labs = zip(*[make_blobs(i) for i in range(5)])
    return list(ims), list(labs)


@pytest.fixture(scope="session")
def unet_trained(unet_data):
    from plateseg.engines.unet import train_unet

    ims, labs = unet_data
    from plateseg.pipeline.validation import validate_unet

    return train_unet(ims[:4], labs[:4], UNET_TINY, val=(ims[4:], labs[4:]), validate=validate_unet)


@pytest.fixture(scope="session")
def maskrcnn_trained(maskrcnn_data):
    from plateseg.engines.maskrcnn import train_maskrcnn

    ims, labs = maskrcnn_data
    from plateseg.pipeline.validation import validate_maskrcnn

    return train_maskrcnn(ims[:4], labs[:4], MASKRCNN_TINY, val=(ims[4:], labs[4:]), validate=validate_maskrcnn)


@pytest.fixture(params=["unet", "maskrcnn"])
def engine(request):
    """Each engine: its module, train function, tiny settings and data."""
    import importlib

    name = request.param
    module = importlib.import_module(f"plateseg.engines.{name}")
    return SimpleNamespace(
        name=name, module=module, train=getattr(module, f"train_{name}"),
        tiny=dict(UNET_TINY if name == "unet" else MASKRCNN_TINY),
        data=request.getfixturevalue(f"{name}_data"))
