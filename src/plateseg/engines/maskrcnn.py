"""The Mask R-CNN engine: model, training, one-file checkpoints and tiled instance inference.

A torchvision ``MaskRCNN`` (trained from scratch: no pretrained weights anywhere) with a
ResNet-FPN backbone sized for the budget (``resnet18`` on CPU, ``resnet50`` or larger on GPU) and
anchors sized for nuclei, from a few pixels to ~150 px across. Choices that differ from
torchvision's defaults (which assume ImageNet-pretrained weights and 800-1333 px photographs):

* **Trainable normalisation.** ``resnet_fpn_backbone`` defaults to ``FrozenBatchNorm2d``, which
  only makes sense with pretrained statistics; here the ResNet uses ``BatchNorm2d``
  (``norm="batch"``) or ``GroupNorm(32)`` (``norm="group"``, better for the small per-GPU batches
  of detection training), and all layers are trainable (``trainable_layers=5``).
* **Input.** Images are percentile-normalised per image and channel exactly as for the U-Net
  (:mod:`plateseg.engines.normalize`) and fed with as many channels as ``channels`` names: the ResNet's
  first convolution takes ``len(channels)`` inputs (no repetition of a grey channel to RGB) and
  the model's own ``image_mean``/``image_std`` are 0/1 (the percentile normalisation is the only
  one).
* **Native resolution.** torchvision's ``GeneralizedRCNNTransform`` rescales every image so its
  short side is ``min_size`` (800). Here the transform never resizes (``_NativeTransform``):
  crops and tiles are seen at the pixel size they were acquired at, so anchors and the halo are in
  real pixels. Inputs are only zero-padded (bottom/right) to a multiple of 32.
* **Anchors** of 8, 16, 32, 64, 128 px (one size per FPN level P2-P6) with aspect ratios 0.5, 1, 2:
  the smallest nuclei (a few px) still get a best-matching anchor (the RPN matcher keeps low-quality
  best matches), the largest (~150 px, or elongated ones) fit the 128 px anchors (seed 004 found
  anchors too small to fit a nucleus a cause of missed large nuclei).
* **Dense fields.** Up to ``box_detections_per_img`` = 1000 detections per tile, RPN keeps 2000
  proposals before and after NMS, 512 sampled RoIs per image in training.
* **Head widths** (``fpn_channels``, ``box_head_dim``, ``mask_head_channels``) are parameters:
  torchvision's 256/1024/256 by default, smaller for quick CPU runs and tests.

Inference on a field is tiled (:func:`plateseg.tiling.grid.tile_grid`): each tile is read with a halo,
an instance belongs to the tile whose core holds its centroid (instances cut by the halo's outer
edge are left to the neighbour that owns them), and overlapping masks are resolved pixel by pixel to
the nearest instance centroid among the masks covering the pixel (seed 004), see
:func:`resolve_overlaps`. The per-tile detector is a plain function, so the tiling and ownership
logic (:func:`_tiled_instances`) is tested with a perfect fake detector. Ownership is exact when
the detector sees an object the same in every window holding it whole: with a halo of at least the
largest object's extent, an object is whole in its owner's window, and a piece of it cut by another
tile's outer edge has its centroid in that tile's halo, not its core. A real model sees different
context in neighbouring windows, so an object whose centroid lies within a pixel or so of a core
seam can (rarely) be claimed by both tiles or by neither. Owned masks touching the halo's outer
edge (objects larger than the halo allows) are flagged ``cut_by_halo`` in the table and logged.

Resuming a killed job: label ids are deterministic, ``tile.number * id_stride + k`` (``k`` = 1, 2,
... among the instances a tile owns, by decreasing score), cores are written in tile order, each
exactly once, and ``on_tile_written(tile, rows)`` hands over the table rows of the instances that
tile owns. A rule persists those rows per tile (e.g. appends them to a per-tile parquet part) and
restarts with ``start`` = the first tile whose core is not written; the few earlier tiles whose
instances reach into later cores are detected again (same ids), not written again.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch

from plateseg.engines.normalize import apply_range, percentile_range
from plateseg.tiling.grid import Tile, _centroids, owned_by_tile, tile_grid
from plateseg.engines.runtime import (
    affine_crop as _affine,
    amp_dtype as _amp_dtype,
    code_version,
    load_model_file,
    lr_factor as _lr_factor,
    resolve_device as _device,
    save_model_file,
    seed_everything,
)

__all__ = [
    "MaskRCNNParams",
    "build_maskrcnn",
    "TrainingSet",
    "instance_targets",
    "seed_everything",
    "train_maskrcnn",
    "checkpoint_meta",
    "save_checkpoint",
    "load_checkpoint",
    "predict_instances",
    "default_id_stride",
    "resolve_overlaps",
    "relabel_instances",
    "centroids",
    "TABLE_COLUMNS",
    "CODE_MODULES",
]

LOG = logging.getLogger("plateseg.engines.maskrcnn")

CHECKPOINT_FORMAT = "plateseg-maskrcnn"
CHECKPOINT_VERSION = 1
CODE_MODULES = ("plateseg.engines.maskrcnn", "plateseg.engines.runtime", "plateseg.engines.normalize", "plateseg.tiling.grid")
TABLE_COLUMNS = ("label", "score", "y0", "x0", "y1", "x1", "centroid_y", "centroid_x", "area",
                 "tile", "tile_row", "tile_col", "cut_by_halo")
LOSS_KEYS = ("loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg")
_FPN_LEVELS = 5  # P2, P3, P4, P5 and the max-pooled P6 ("pool")
_BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
              "resnext101_32x8d", "wide_resnet50_2", "wide_resnet101_2")


@dataclass
class MaskRCNNParams:
    """All settings of a Mask R-CNN training run (the science ones belong in the pipeline config).

    Architecture: ``backbone`` (a torchvision ResNet name: ``resnet18`` on CPU, ``resnet50`` on
    GPU), ``norm`` (``"batch"`` or ``"group"``: trainable normalisation of the ResNet),
    ``trainable_layers`` (0-5; 5 = all, what training from scratch needs), ``fpn_channels``,
    ``box_head_dim`` (width of the two-layer box head), ``mask_head_channels`` (width of the four
    mask convolutions), ``channels`` (image channels fed to the model).

    Anchors and RPN: ``anchor_sizes`` (one size, or a tuple of sizes, per FPN level P2-P6),
    ``aspect_ratios``, ``rpn_pre_nms_top_n_train/test``, ``rpn_post_nms_top_n_train/test``,
    ``rpn_nms_thresh``, ``rpn_batch_size_per_image``.

    RoI heads: ``box_batch_size_per_image`` (RoIs sampled per image in training),
    ``box_detections_per_img`` (max detections per tile), ``box_score_thresh`` (the model's own
    floor; inference thresholds with ``score_threshold``), ``box_nms_thresh``.

    Normalisation: ``p_low``, ``p_high`` percentiles per image and channel (as the U-Net);
    ``pixel_size`` the images were acquired at (recorded only).

    Targets: ``min_area`` - objects with fewer pixels in an augmented crop are not targets.

    Optimisation: ``epochs``, ``samples_per_epoch`` (None: the number of images, at least one
    batch), ``batch_size``, ``crop_size``, ``lr``, ``weight_decay`` (AdamW), ``warmup_steps`` then
    cosine decay to ``lr * min_lr_ratio``, ``grad_clip`` (max gradient norm or None).

    Augmentation (as the U-Net's): ``flips``, ``rot90``, ``scale_range`` (log-uniform zoom),
    ``intensity_jitter`` (multiplicative and additive, on the normalised image).

    Runtime: ``seed``, ``device`` ("auto", "cpu", "cuda", "cuda:1"), ``amp`` (CUDA only),
    ``num_workers``.

    Validation (each ``val_every`` epochs and after the last): tiled prediction with
    ``val_tile_size``/``val_halo`` and ``val_score_threshold``.
    """

    backbone: str = "resnet18"
    norm: str = "batch"
    trainable_layers: int = 5
    fpn_channels: int = 256
    box_head_dim: int = 1024
    mask_head_channels: int = 256
    channels: tuple = (0,)
    anchor_sizes: tuple = (8, 16, 32, 64, 128)
    aspect_ratios: tuple = (0.5, 1.0, 2.0)
    rpn_pre_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_train: int = 2000
    rpn_pre_nms_top_n_test: int = 2000
    rpn_post_nms_top_n_test: int = 2000
    rpn_nms_thresh: float = 0.7
    rpn_batch_size_per_image: int = 256
    box_batch_size_per_image: int = 512
    box_detections_per_img: int = 1000
    box_score_thresh: float = 0.05
    box_nms_thresh: float = 0.5
    p_low: float = 1.0
    p_high: float = 99.8
    pixel_size: float | None = None
    min_area: int = 4
    epochs: int = 20
    samples_per_epoch: int | None = None
    batch_size: int = 4
    crop_size: int = 256
    lr: float = 3e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    min_lr_ratio: float = 0.05
    grad_clip: float | None = 10.0
    flips: bool = True
    rot90: bool = True
    scale_range: tuple = (0.8, 1.25)
    intensity_jitter: float = 0.1
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    num_workers: int = 0
    val_every: int = 1
    val_tile_size: int = 256
    val_halo: int = 32
    val_score_threshold: float = 0.5

    @classmethod
    def coerce(cls, params=None) -> "MaskRCNNParams":
        """A :class:`MaskRCNNParams` from None, an instance or a dict (unknown keys are an error).

        Examples
        --------
        >>> p = MaskRCNNParams.coerce({"epochs": 2, "anchor_sizes": [[6, 8], 16, 32, 64, 128]})
        >>> p.anchor_sizes
        ((6, 8), 16, 32, 64, 128)
        """
        from plateseg.config.checks import coerce_params

        return coerce_params(cls, params, "Mask R-CNN")

    def validate(self) -> None:
        if self.backbone not in _BACKBONES:
            raise ValueError(f"backbone must be one of {_BACKBONES}, got {self.backbone!r}")
        if self.norm not in ("batch", "group"):
            raise ValueError(f"norm must be 'batch' or 'group', got {self.norm!r}")
        if not 0 <= int(self.trainable_layers) <= 5:
            raise ValueError("trainable_layers must be in 0..5")
        if len(self.anchor_sizes) != _FPN_LEVELS:
            raise ValueError(f"anchor_sizes needs one entry per FPN level ({_FPN_LEVELS}), "
                             f"got {self.anchor_sizes}")
        if not self.channels:
            raise ValueError("channels must name at least one image channel")
        if self.crop_size < 32:
            raise ValueError("crop_size must be at least 32")


def _anchor_sizes(sizes) -> tuple:
    return tuple(tuple(int(a) for a in s) if isinstance(s, (tuple, list)) else (int(s),)
                 for s in sizes)


# --------------------------------------------------------------------------- model

@functools.lru_cache(maxsize=None)
def _native_transform_class():
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    class _NativeTransform(GeneralizedRCNNTransform):
        """torchvision's transform without the resize: images keep their pixel size."""

        def resize(self, image, target=None):
            return image, target

    return _NativeTransform


def _arch(p: MaskRCNNParams) -> dict:
    return {
        "name": "torchvision.MaskRCNN",
        "backbone": p.backbone,
        "norm": p.norm,
        "trainable_layers": int(p.trainable_layers),
        "fpn_channels": int(p.fpn_channels),
        "box_head_dim": int(p.box_head_dim),
        "mask_head_channels": int(p.mask_head_channels),
        "in_channels": len(p.channels),
        "num_classes": 2,
        "anchor_sizes": [list(s) for s in _anchor_sizes(p.anchor_sizes)],
        "aspect_ratios": [float(a) for a in p.aspect_ratios],
        "rpn_pre_nms_top_n_train": int(p.rpn_pre_nms_top_n_train),
        "rpn_post_nms_top_n_train": int(p.rpn_post_nms_top_n_train),
        "rpn_pre_nms_top_n_test": int(p.rpn_pre_nms_top_n_test),
        "rpn_post_nms_top_n_test": int(p.rpn_post_nms_top_n_test),
        "rpn_nms_thresh": float(p.rpn_nms_thresh),
        "rpn_batch_size_per_image": int(p.rpn_batch_size_per_image),
        "box_batch_size_per_image": int(p.box_batch_size_per_image),
        "box_detections_per_img": int(p.box_detections_per_img),
        "box_score_thresh": float(p.box_score_thresh),
        "box_nms_thresh": float(p.box_nms_thresh),
        "resize": "none (native resolution)",
    }


def _model_from_arch(arch: dict) -> torch.nn.Module:
    if arch.get("name") != "torchvision.MaskRCNN":
        raise ValueError(f"unknown architecture {arch.get('name')!r}")
    from torch import nn
    from torchvision.models import resnet
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    if arch["norm"] == "batch":
        norm_layer = nn.BatchNorm2d
    else:
        def norm_layer(c):
            return nn.GroupNorm(math.gcd(32, int(c)), int(c))
    c_in = int(arch["in_channels"])
    body = getattr(resnet, arch["backbone"])(weights=None, norm_layer=norm_layer)
    body.conv1 = nn.Conv2d(c_in, body.conv1.out_channels, kernel_size=7, stride=2, padding=3,
                           bias=False)
    nn.init.kaiming_normal_(body.conv1.weight, mode="fan_out", nonlinearity="relu")
    trainable = ["layer4", "layer3", "layer2", "layer1", "conv1"][:int(arch["trainable_layers"])]
    if int(arch["trainable_layers"]) == 5:
        trainable.append("bn1")
    for name, param in body.named_parameters():
        if not any(name.startswith(t) for t in trainable):
            param.requires_grad_(False)
    stage2 = body.inplanes // 8
    fpn = int(arch["fpn_channels"])
    backbone = BackboneWithFPN(
        body, {f"layer{k}": str(k - 1) for k in (1, 2, 3, 4)},
        [stage2 * 2 ** (k - 1) for k in (1, 2, 3, 4)], fpn, extra_blocks=LastLevelMaxPool())
    sizes = _anchor_sizes(arch["anchor_sizes"])
    ratios = tuple(float(a) for a in arch["aspect_ratios"])
    anchors = AnchorGenerator(sizes=sizes, aspect_ratios=(ratios,) * len(sizes))
    mh = int(arch["mask_head_channels"])
    bh = int(arch["box_head_dim"])
    model = MaskRCNN(
        backbone, num_classes=None,
        min_size=32, max_size=32, image_mean=[0.0] * c_in, image_std=[1.0] * c_in,
        rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=int(arch["rpn_pre_nms_top_n_train"]),
        rpn_pre_nms_top_n_test=int(arch["rpn_pre_nms_top_n_test"]),
        rpn_post_nms_top_n_train=int(arch["rpn_post_nms_top_n_train"]),
        rpn_post_nms_top_n_test=int(arch["rpn_post_nms_top_n_test"]),
        rpn_nms_thresh=float(arch["rpn_nms_thresh"]),
        rpn_batch_size_per_image=int(arch["rpn_batch_size_per_image"]),
        box_head=TwoMLPHead(fpn * 7 * 7, bh),
        box_predictor=FastRCNNPredictor(bh, int(arch["num_classes"])),
        box_score_thresh=float(arch["box_score_thresh"]),
        box_nms_thresh=float(arch["box_nms_thresh"]),
        box_detections_per_img=int(arch["box_detections_per_img"]),
        box_batch_size_per_image=int(arch["box_batch_size_per_image"]),
        mask_head=MaskRCNNHeads(fpn, (mh,) * 4, 1),
        mask_predictor=MaskRCNNPredictor(mh, mh, int(arch["num_classes"])),
    )
    model.transform = _native_transform_class()(32, 32, [0.0] * c_in, [1.0] * c_in)
    return model


def build_maskrcnn(params=None) -> torch.nn.Module:
    """A torchvision ``MaskRCNN`` with random weights, built from :class:`MaskRCNNParams`.

    The model takes a list of ``(len(channels), h, w)`` float tensors (percentile-normalised) of
    any size and never rescales them.

    Examples
    --------
    >>> _ = torch.manual_seed(0)
    >>> m = build_maskrcnn({"fpn_channels": 16, "box_head_dim": 32, "mask_head_channels": 8})
    >>> out = m.eval()([torch.zeros(1, 40, 72)])[0]
    >>> sorted(out), out["masks"].shape[-2:]
    (['boxes', 'labels', 'masks', 'scores'], torch.Size([40, 72]))
    """
    p = MaskRCNNParams.coerce(params)
    return _model_from_arch(_arch(p))


# --------------------------------------------------------------------------- data



def instance_targets(labels, min_area: int = 1) -> dict:
    """torchvision detection targets from an instance label image.

    Parameters
    ----------
    labels : array_like
        ``(h, w)`` integer labels, 0 = background.
    min_area : int
        Objects with fewer pixels are left out.

    Returns
    -------
    dict
        ``boxes`` float32 ``(n, 4)`` as ``x0, y0, x1, y1`` (end-exclusive pixel edges),
        ``labels`` int64 ``(n,)`` all 1, ``masks`` uint8 ``(n, h, w)``; ``n`` may be 0.

    Examples
    --------
    >>> lab = np.zeros((6, 8), int); lab[1:3, 2:5] = 4; lab[4, 0] = 9
    >>> t = instance_targets(lab, min_area=2)
    >>> t["boxes"].tolist(), t["labels"].tolist(), tuple(t["masks"].shape)
    ([[2.0, 1.0, 5.0, 3.0]], [1], (1, 6, 8))
    >>> tuple(instance_targets(np.zeros((6, 8), int))["boxes"].shape)
    (0, 4)
    """
    from scipy import ndimage as ndi

    lab = np.asarray(labels)
    h, w = lab.shape
    ids, counts = np.unique(lab, return_counts=True)
    keep = (ids > 0) & (counts >= max(int(min_area), 1))
    ids = ids[keep]
    boxes = np.zeros((len(ids), 4), np.float32)
    masks = np.zeros((len(ids), h, w), np.uint8)
    if len(ids):
        # relabel to 1..n so that find_objects stays small whatever the ids are
        lut = np.zeros(int(lab.max()) + 1, np.int64)
        lut[ids] = np.arange(1, len(ids) + 1)
        dense = lut[lab.astype(np.int64)]
        for i, sl in enumerate(ndi.find_objects(dense)):
            boxes[i] = (sl[1].start, sl[0].start, sl[1].stop, sl[0].stop)
            masks[i][sl] = dense[sl] == i + 1
    return {"boxes": torch.from_numpy(boxes),
            "labels": torch.ones(len(ids), dtype=torch.int64),
            "masks": torch.from_numpy(masks)}


class TrainingSet(torch.utils.data.Dataset):
    """Augmented random crops and their detection targets, reproducible per ``(seed, epoch, i)``.

    Parameters
    ----------
    images : sequence of array_like
        ``(c, h, w)`` (or ``(h, w)``) images; ``params.channels`` are used.
    masks : sequence of array_like
        ``(h, w)`` instance labels.
    params : MaskRCNNParams or dict

    Notes
    -----
    As :class:`plateseg.engines.unet.TrainingSet`: item ``i`` of epoch ``e`` is drawn from image
    ``perm_e[i % n]`` with ``numpy.random.default_rng([seed, e, i])``: zoom log-uniform in
    ``scale_range``, a random crop (images smaller than the crop are centred and padded with 0 =
    the normalised low percentile), intensity jitter, a 90-degree rotation and a flip. Targets
    (:func:`instance_targets`) are made from the augmented labels, so crops without objects give
    empty targets (boxes of shape ``(0, 4)``), which torchvision trains on as all-background.

    Each item is ``(x (c, S, S) float32 tensor, target dict)``.
    """

    def __init__(self, images, masks, params=None):
        self.p = MaskRCNNParams.coerce(params)
        if len(images) != len(masks) or not len(images):
            raise ValueError("need as many masks as images (and at least one)")
        self.images, self.masks = [], []
        for img, lab in zip(images, masks):
            img = np.asarray(img)
            if img.ndim == 2:
                img = img[None]
            img = img[list(self.p.channels)]
            lo, hi = percentile_range(img, self.p.p_low, self.p.p_high)
            self.images.append(apply_range(img, lo, hi))
            lab = np.asarray(lab).astype(np.int32)
            if lab.shape != img.shape[-2:]:
                raise ValueError(f"mask {lab.shape} does not match image {img.shape}")
            self.masks.append(lab)
        self.epoch = 0
        self._perm = None
        self.set_epoch(0)

    def __len__(self) -> int:
        n = self.p.samples_per_epoch or len(self.images)
        return max(int(n), int(self.p.batch_size))

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's image order (call before iterating)."""
        self.epoch = int(epoch)
        rng = np.random.default_rng([self.p.seed, self.epoch, 2**31 - 1])
        reps = -(-len(self) // len(self.images))
        self._perm = np.concatenate([rng.permutation(len(self.images)) for _ in range(reps)])

    def __getitem__(self, i: int):
        rng = np.random.default_rng([self.p.seed, self.epoch, int(i)])
        x, lab = self.sample(int(self._perm[i]), rng)
        return torch.from_numpy(x), instance_targets(lab, self.p.min_area)

    def sample(self, k: int, rng: np.random.Generator):
        """One augmented crop of image ``k``: ``(x (c, S, S) float32, labels (S, S) int32)``."""
        p = self.p
        img, lab = self.images[k], self.masks[k]
        h, w = lab.shape
        S = int(p.crop_size)
        lo_s, hi_s = p.scale_range
        s = (float(math.exp(rng.uniform(math.log(lo_s), math.log(hi_s)))) if hi_s > lo_s
             else float(lo_s))
        core = S / s
        origin = [rng.uniform(0.0, n - core) if n > core else (n - core) / 2.0 for n in (h, w)]
        x = np.stack([_affine(c, s, origin, S, 1) for c in img])
        labs = _affine(lab, s, origin, S, 0)
        if p.intensity_jitter > 0:
            j = p.intensity_jitter
            gain = 1.0 + rng.uniform(-j, j, size=(x.shape[0], 1, 1))
            bias = rng.uniform(-j, j, size=(x.shape[0], 1, 1))
            x = x * gain + bias
        stack = np.concatenate([x, labs[None].astype(np.float32)])
        if p.rot90:
            stack = np.rot90(stack, int(rng.integers(4)), axes=(1, 2))
        if p.flips and rng.random() < 0.5:
            stack = stack[:, :, ::-1]
        c = x.shape[0]
        return (np.ascontiguousarray(stack[:c], dtype=np.float32),
                np.ascontiguousarray(stack[c]).astype(np.int32))


def _collate(batch):
    xs, ts = zip(*batch)
    return list(xs), list(ts)


# --------------------------------------------------------------------------- training









def _validate(model, meta, val, p: MaskRCNNParams, device) -> dict:
    from plateseg.evaluation.metrics import dsb_map, matching

    images, masks = val
    tp = fp = fn = 0
    aps, n_pred = [], 0
    for img, lab in zip(images, masks):
        pred, _ = predict_instances(model, meta, img, p.val_tile_size, p.val_halo,
                                    p.batch_size, device, score_threshold=p.val_score_threshold)
        gt = np.asarray(lab)
        m = matching(gt, pred, 0.5)
        tp, fp, fn = tp + m["tp"], fp + m["fp"], fn + m["fn"]
        n_pred += int(m["n_pred"])
        aps.append(dsb_map(gt, pred))
    return {"val_f1_50": 1.0 if tp + fp + fn == 0 else 2.0 * tp / (2 * tp + fp + fn),
            "val_ap": float(np.mean(aps)), "val_n_pred": n_pred}


def train_maskrcnn(images, masks, params=None, log: logging.Logger | None = None, val=None,
                   on_epoch_end: Callable[[dict], bool | None] | None = None,
                   initial_weights: dict | None = None):
    """Train a Mask R-CNN from scratch on annotated images.

    Parameters
    ----------
    images : sequence of array_like
        Training images ``(c, h, w)`` (any size, any numeric dtype).
    masks : sequence of array_like
        Instance labels ``(h, w)``.
    params : MaskRCNNParams or dict, optional
        Settings; see :class:`MaskRCNNParams`.
    log : logging.Logger, optional
        Receives one INFO line per epoch (losses, learning rate, seconds, validation metrics).
        Default: the ``plateseg.engines.maskrcnn`` logger.
    val : tuple of (images, masks), optional
        Held-out images for per-epoch validation (tiled :func:`predict_instances`).
    on_epoch_end : callable, optional
        Called with each epoch's history record; if it returns True, training stops after this
        epoch (the learning rate has then not decayed to its end value; for wall-time guards).
    initial_weights : dict, optional
        A state dict of the same architecture to start from (continue training, fine-tune a
        checkpoint) instead of random weights.

    Returns
    -------
    model : torch.nn.Module
        The final model, in eval mode, on the training device.
    history : list of dict
        One record per epoch: ``epoch``, ``loss`` and its parts ``loss_classifier``,
        ``loss_box_reg``, ``loss_mask``, ``loss_objectness``, ``loss_rpn_box_reg`` (means over
        the epoch's crops), ``lr``, ``steps``, ``seconds`` and, when validated, ``val_f1_50``,
        ``val_ap`` (DSB mean over IoU 0.5:0.95), ``val_n_pred``.

    Notes
    -----
    Seeds Python, numpy and torch (the RPN and RoI samplers draw from torch's global generator)
    and, on CPU, turns on ``torch.use_deterministic_algorithms(True, warn_only=True)`` for the
    duration of the call: two runs with the same inputs and parameters give the same weights on
    CPU.
    """
    p = MaskRCNNParams.coerce(params)
    p.validate()
    log = log or LOG
    device = _device(p.device)
    seed_everything(p.seed)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        return _train(images, masks, p, log, val, on_epoch_end, device, initial_weights)
    finally:
        torch.use_deterministic_algorithms(was_deterministic, warn_only=was_warn_only)


def _train(images, masks, p, log, val, on_epoch_end, device, initial_weights=None):
    model = _model_from_arch(_arch(p))
    if initial_weights is not None:
        model.load_state_dict(initial_weights)
    model = model.to(device)
    cuda = device.type == "cuda"
    data = TrainingSet(images, masks, p)
    loader = torch.utils.data.DataLoader(
        data, batch_size=p.batch_size, shuffle=False, num_workers=p.num_workers,
        pin_memory=cuda, drop_last=False, collate_fn=_collate,
        generator=torch.Generator().manual_seed(p.seed), persistent_workers=False)
    steps_per_epoch = len(loader)
    total = steps_per_epoch * p.epochs
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=p.lr, weight_decay=p.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: _lr_factor(s, total, min(p.warmup_steps, total // 2), p.min_lr_ratio))
    amp_dtype = _amp_dtype(device, p.amp)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    meta = checkpoint_meta(p)
    history = []
    log.info("training Mask R-CNN %s-FPN on %d images (%s), %d epochs x %d steps of %d crops %dpx",
             p.backbone, len(data.images), device, p.epochs, steps_per_epoch, p.batch_size,
             p.crop_size)
    for epoch in range(p.epochs):
        t0 = time.perf_counter()
        model.train()
        data.set_epoch(epoch)
        sums = dict.fromkeys(("loss",) + LOSS_KEYS, 0.0)
        n_seen = n_objects = 0
        for xs, targets in loader:
            xs = [x.to(device, non_blocking=True) for x in xs]
            targets = [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                parts = model(xs, targets)
            loss = sum(v.float() for v in parts.values())
            if not torch.isfinite(loss):
                raise FloatingPointError(f"epoch {epoch + 1}: loss is {float(loss)} "
                                         f"({ {k: float(v) for k, v in parts.items()} }); "
                                         "lower lr or raise warmup_steps")
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
            else:
                loss.backward()
            if p.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, p.grad_clip)
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            sched.step()
            n = len(xs)
            n_seen += n
            n_objects += sum(int(t["labels"].numel()) for t in targets)
            sums["loss"] += float(loss.detach()) * n
            for k in LOSS_KEYS:
                sums[k] += float(parts[k].detach()) * n
        rec = {"epoch": epoch + 1, **{k: v / n_seen for k, v in sums.items()},
               "lr": float(opt.param_groups[0]["lr"]), "steps": steps_per_epoch,
               "objects_per_crop": n_objects / n_seen}
        msg = ""
        if val is not None and ((epoch + 1) % max(p.val_every, 1) == 0 or epoch + 1 == p.epochs):
            model.eval()
            rec.update(_validate(model, meta, val, p, device))
            msg = (" | val F1@0.5 {val_f1_50:.3f} AP {val_ap:.3f} ({val_n_pred} objects)"
                   .format(**rec))
        rec["seconds"] = time.perf_counter() - t0
        history.append(rec)
        log.info("epoch %d/%d loss %.4f (cls %.4f box %.4f mask %.4f rpn %.4f rpn-box %.4f) "
                 "lr %.2e %.1f s%s", epoch + 1, p.epochs, rec["loss"], rec["loss_classifier"],
                 rec["loss_box_reg"], rec["loss_mask"], rec["loss_objectness"],
                 rec["loss_rpn_box_reg"], rec["lr"], rec["seconds"], msg)
        if on_epoch_end is not None and on_epoch_end(rec) is True and epoch + 1 < p.epochs:
            log.info("stopped after epoch %d of %d by on_epoch_end", epoch + 1, p.epochs)
            break
    model.eval()
    return model, history


# --------------------------------------------------------------------------- checkpoints



def checkpoint_meta(params=None, data_hash: str | None = None, history: list | None = None,
                    **extra) -> dict:
    """Everything inference needs to know about a model, besides its weights.

    Keys: ``format``, ``format_version``, ``arch`` (backbone, normalisation, head widths, input
    channels, anchors, RPN and RoI settings; enough to rebuild the model), ``channels`` (image
    channels used), ``normalization`` (``method: percentile``, ``p_low``, ``p_high``, per image
    and channel), ``resize`` (``"none"``: native resolution), ``pixel_size``, ``data_hash``,
    ``code_version``, ``params`` (all training settings), ``history``, ``versions`` (torch,
    torchvision), plus ``extra`` keys (plain Python values, e.g. ``fold=2``).

    Examples
    --------
    >>> m = checkpoint_meta({"backbone": "resnet18"}, data_hash="abc", fold=1)
    >>> m["arch"]["anchor_sizes"], m["channels"], m["normalization"]["p_high"], m["fold"]
    ([[8], [16], [32], [64], [128]], [0], 99.8, 1)
    """
    import torchvision

    p = MaskRCNNParams.coerce(params) if not isinstance(params, MaskRCNNParams) else params
    meta = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "arch": _arch(p),
        "channels": [int(c) for c in p.channels],
        "normalization": {"method": "percentile", "p_low": float(p.p_low),
                          "p_high": float(p.p_high), "per": "image and channel"},
        "resize": "none",
        "pixel_size": None if p.pixel_size is None else float(p.pixel_size),
        "data_hash": data_hash,
        "code_version": code_version(CODE_MODULES),
        "params": {k: ([list(a) if isinstance(a, tuple) else a for a in v] if isinstance(v, tuple)
                       else v)
                   for k, v in dataclasses.asdict(p).items()},
        "history": list(history or []),
        "versions": {"torch": str(torch.__version__), "torchvision": str(torchvision.__version__)},
    }
    meta.update(extra)
    return meta


_REQUIRED = ("arch", "channels", "normalization")


def save_checkpoint(path, model: torch.nn.Module, meta: dict) -> None:
    """Write model weights and ``meta`` (see :func:`checkpoint_meta`) to one file, atomically.

    Written under a temporary name in the same folder, fsynced and moved into place with
    :func:`os.replace`, so a killed job never leaves a truncated checkpoint. Weights are stored on
    CPU. The file loads with ``torch.load(weights_only=True)``.
    """
    save_model_file(path, model, meta, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, _REQUIRED)


def load_checkpoint(path, device=None):
    """Load a checkpoint written by :func:`save_checkpoint`.

    Parameters
    ----------
    path : str or path-like
    device : str or torch.device, optional
        Where to put the model ("auto"/None: CUDA if available, else CPU).

    Returns
    -------
    model : torch.nn.Module
        In eval mode, on ``device``.
    meta : dict
        The stored metadata (everything but the weights).
    """
    return load_model_file(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, _model_from_arch, device)


# --------------------------------------------------------------------------- overlaps

def _paint(region, instances, lab: np.ndarray | None = None) -> np.ndarray:
    """Paint ``instances`` into ``region`` (y, x slices), nearest centroid wins on overlaps.

    ``instances`` is an iterable of ``(label, y0, x0, mask, cy, cx)`` with ``mask`` a bool array
    whose top-left pixel is ``(y0, x0)`` and the centroid ``(cy, cx)``, all in the coordinates of
    ``region``. A pixel goes to the covering instance with the smallest squared distance from
    pixel to centroid; on exact ties the earlier instance keeps it.
    """
    ys, xs = region
    H, W = ys.stop - ys.start, xs.stop - xs.start
    if lab is None:
        lab = np.zeros((H, W), np.uint32)
    best = np.full((H, W), np.inf)
    for label, y0, x0, mask, cy, cx in instances:
        a0, a1 = max(y0, ys.start), min(y0 + mask.shape[0], ys.stop)
        b0, b1 = max(x0, xs.start), min(x0 + mask.shape[1], xs.stop)
        if a0 >= a1 or b0 >= b1:
            continue
        m = mask[a0 - y0:a1 - y0, b0 - x0:b1 - x0]
        dy = (np.arange(a0, a1, dtype=np.float64) - cy) ** 2
        dx = (np.arange(b0, b1, dtype=np.float64) - cx) ** 2
        d = dy[:, None] + dx[None, :]
        sub = (slice(a0 - ys.start, a1 - ys.start), slice(b0 - xs.start, b1 - xs.start))
        win = m & (d < best[sub])
        lab[sub][win] = label
        best[sub][win] = d[win]
    return lab


def _mask_box(mask: np.ndarray):
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return None
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def resolve_overlaps(masks, centroids=None) -> np.ndarray:
    """Instance labels from possibly overlapping masks: contested pixels go to the nearest centroid.

    Seed 004's rule for Mask R-CNN: a pixel covered by one mask belongs to it; a pixel covered by
    several belongs to the one whose centroid is nearest (Euclidean distance from the pixel's
    coordinates); exact ties go to the mask listed first (pass masks by decreasing score).

    Parameters
    ----------
    masks : array_like
        bool ``(n, h, w)``.
    centroids : array_like, optional
        ``(n, 2)`` ``(y, x)``; default the centroid of each mask.

    Returns
    -------
    numpy.ndarray
        uint32 ``(h, w)``: ``i + 1`` where mask ``i`` won, 0 where no mask covers the pixel. (A
        mask can lose all its pixels, e.g. one lying inside a larger mask near its centroid.)

    Examples
    --------
    >>> m = np.zeros((2, 1, 7), bool); m[0, 0, :5] = True; m[1, 0, 2:] = True
    >>> resolve_overlaps(m).tolist()  # centroids x = 2 and 4; x = 3 is a tie: the first mask
    [[1, 1, 1, 1, 2, 2, 2]]
    """
    masks = np.asarray(masks, bool)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (n, h, w), got {masks.shape}")
    n, h, w = masks.shape
    if centroids is None:
        yy, xx = np.arange(h), np.arange(w)
        area = masks.sum(axis=(1, 2)).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            cy = (masks.sum(axis=2) * yy).sum(axis=1) / area
            cx = (masks.sum(axis=1) * xx).sum(axis=1) / area
        centroids = np.stack([cy, cx], axis=1)
    centroids = np.asarray(centroids, np.float64).reshape(n, 2)
    items = []
    for i in range(n):
        box = _mask_box(masks[i])
        if box is None:
            continue
        y0, x0, y1, x1 = box
        items.append((i + 1, y0, x0, masks[i, y0:y1, x0:x1], centroids[i, 0], centroids[i, 1]))
    return _paint((slice(0, h), slice(0, w)), items)


def centroids(labels) -> np.ndarray:
    """Centroids ``(n, 2)`` ``(y, x)`` of the objects of a label image, by ascending label id.

    For example Mask R-CNN centroids as watershed markers for the U-Net path:
    ``instances_from_maps(maps, mode="points", points=centroids(maskrcnn_labels))``.

    Examples
    --------
    >>> lab = np.zeros((5, 6), int); lab[0:3, 0:3] = 2; lab[4, 4:6] = 7
    >>> centroids(lab).tolist()
    [[1.0, 1.0], [4.0, 4.5]]
    """
    return _centroids(np.asarray(labels))[1]


def relabel_instances(labels, table: pd.DataFrame, drop_empty: bool = True):
    """Number a field's instances 1..N in table order and update the table.

    The new label of an instance is its rank among the table's labels (ascending, i.e. by tile
    and then by decreasing score for :func:`predict_instances` ids). The mapping depends only on
    the table, so a label image too large for memory (zarr) can be relabelled chunk by chunk
    with ``drop_empty=False``: ``out[sl] = relabel_instances(out[sl], table, False)[0]``.
    (:func:`plateseg.segment.classical.relabel_sequential` numbers by first appearance, which needs the
    whole image and a lookup table as long as the largest id, ``tiles x id_stride``.)

    Parameters
    ----------
    labels : array_like
        Integer labels whose non-zero values are all in ``table["label"]``.
    table : pandas.DataFrame
        With a ``label`` column.
    drop_empty : bool
        Drop rows of instances absent from ``labels`` (those that lost all their pixels to
        overlap resolution) before numbering; needs the whole field.

    Returns
    -------
    labels : numpy.ndarray
        uint32, same shape.
    table : pandas.DataFrame
        Sorted by the new ``label``.

    Examples
    --------
    >>> lab = np.array([[0, 2049, 2049, 1025, 0, 7]])
    >>> tab = pd.DataFrame({"label": [7, 1025, 2049, 3000], "score": [.9, .8, .7, .6]})
    >>> new, t = relabel_instances(lab, tab)
    >>> new.tolist(), t["label"].tolist(), t["score"].tolist()
    ([[0, 3, 3, 2, 0, 1]], [1, 2, 3], [0.9, 0.8, 0.7])
    """
    labels = np.asarray(labels)
    ids = np.unique(table["label"].to_numpy().astype(np.int64))
    if drop_empty:
        ids = ids[np.isin(ids, labels)]
    new = np.zeros(labels.shape, np.uint32)
    fg = labels > 0
    vals = labels[fg].astype(np.int64)
    pos = np.searchsorted(ids, vals)
    known = pos < len(ids)
    known[known] = ids[pos[known]] == vals[known]
    if not known.all():
        raise ValueError(f"labels without a table row: {np.unique(vals[~known])[:5].tolist()}")
    new[fg] = pos + 1
    table = table[table["label"].isin(ids)].copy()
    table["label"] = (np.searchsorted(ids, table["label"].to_numpy().astype(np.int64)) + 1
                      ).astype(np.uint32)
    table = table.sort_values("label", kind="stable").reset_index(drop=True)
    return new, table


# --------------------------------------------------------------------------- tiled inference

def _reach(tile: int, halo: int) -> int:
    return -(-halo // tile) if halo > 0 else 0


def _tiled_instances(detect_fn, read_fn, shape, tile_size, halo, batch_size: int = 1, *,
                     out=None, start: int = 0, on_tile_written=None, id_stride: int = 1024,
                     min_area: int = 1, log: logging.Logger | None = None):
    """Instances of a whole field from a per-window detector, tile by tile (see the module doc).

    Parameters
    ----------
    detect_fn : callable
        ``detect_fn(windows)`` with a list of ``(c, h, w)`` float arrays (read windows, not
        padded, of varying size at the field edge) returns one ``(masks, scores)`` per window:
        bool ``(n, h, w)`` instance masks in window coordinates (thresholded) and ``(n,)`` scores,
        by decreasing score.
    read_fn : callable
        ``read_fn((ys, xs))`` returns the field's pixels in the given slices as ``(c, h, w)``.
    shape : tuple of int
        Field shape (the last two entries are ``(h, w)``).
    tile_size, halo : int or (int, int)
        See :func:`plateseg.tiling.grid.tile_grid`.
    batch_size : int
        Windows per ``detect_fn`` call.
    out : array-like, optional
        ``(h, w)`` uint32 target supporting ``out[ys, xs] = values``; default a numpy array.
    start : int
        First tile whose core is written and whose instances are reported (resume).
    on_tile_written : callable, optional
        ``on_tile_written(tile, rows)`` after the tile's core is written, ``rows`` the
        DataFrame (:data:`TABLE_COLUMNS`) of the instances the tile owns.
    id_stride : int
        Label ids are ``tile.number * id_stride + k``, ``k = 1 .. (owned instances)``.
    min_area : int
        Masks with fewer pixels are ignored.

    Returns
    -------
    out : array-like
        ``(h, w)`` uint32 labels, overlaps resolved to the nearest centroid.
    table : pandas.DataFrame
        One row per reported instance (tiles ``start`` and after).
    """
    log = log or LOG
    h, w = (int(s) for s in shape[-2:])
    tiles = tile_grid((h, w), tile_size, halo)
    ts = (tile_size, tile_size) if np.isscalar(tile_size) else tuple(int(a) for a in tile_size)
    hl = (halo, halo) if np.isscalar(halo) else tuple(int(a) for a in halo)
    if len(tiles) * int(id_stride) >= 2**32:
        raise ValueError(f"{len(tiles)} tiles x id_stride {id_stride} overflows uint32 labels")
    ny, nx = tiles[-1].index[0] + 1, tiles[-1].index[1] + 1
    ry, rx = _reach(ts[0], hl[0]), _reach(ts[1], hl[1])

    def neighbours(t: Tile):
        r, c = t.index
        for rr in range(max(r - ry, 0), min(r + ry, ny - 1) + 1):
            for cc in range(max(c - rx, 0), min(c + rx, nx - 1) + 1):
                yield rr * nx + cc

    final_after = [max(neighbours(t)) for t in tiles]  # symmetric: also the last core j reaches
    needed = sorted({j for t in tiles[start:] for j in neighbours(t)})
    if out is None:
        out = np.zeros((h, w), np.uint32)
    store: dict[int, tuple[list, list]] = {}  # tile -> (paint items, table rows)
    rows_all = []
    next_write = start
    bs = max(int(batch_size), 1)

    def owned_instances(t: Tile, masks, scores):
        oy, ox = t.read[0].start, t.read[1].start
        wh, ww = t.read[0].stop - oy, t.read[1].stop - ox
        masks = np.asarray(masks, bool).reshape(-1, wh, ww)
        scores = np.asarray(scores, np.float64).reshape(-1)
        if len(scores) != len(masks):
            raise ValueError(f"detect_fn gave {len(masks)} masks and {len(scores)} scores")
        cand = []
        for m, s in zip(masks, scores):
            box = _mask_box(m)
            if box is None:
                continue
            y0, x0, y1, x1 = box
            crop = m[y0:y1, x0:x1]
            yy, xx = np.nonzero(crop)
            if len(yy) < max(int(min_area), 1):
                continue
            cand.append((float(s), y0, x0, y1, x1, crop, oy + y0 + yy.mean(), ox + x0 + xx.mean(),
                         len(yy)))
        if not cand:
            return [], []
        cen = np.array([[c[6], c[7]] for c in cand])
        owned = [c for c, o in zip(cand, owned_by_tile(cen, t)) if o]
        if len(owned) >= id_stride:
            raise ValueError(f"tile {t.number} owns {len(owned)} instances, more than id_stride "
                             f"{id_stride} allows")
        items, rows = [], []
        n_cut = 0
        for k, (s, y0, x0, y1, x1, crop, cy, cx, area) in enumerate(owned, start=1):
            cut = bool((y0 == 0 and oy > 0) or (y1 == wh and oy + wh < h)
                       or (x0 == 0 and ox > 0) or (x1 == ww and ox + ww < w))
            n_cut += cut
            label = t.number * id_stride + k
            items.append((label, oy + y0, ox + x0, crop, cy, cx))
            rows.append((label, s, oy + y0, ox + x0, oy + y1, ox + x1, cy, cx, area, t.number,
                         t.index[0], t.index[1], cut))
        if n_cut:
            log.warning("tile %d %s: %d owned instance(s) touch the halo's outer edge (larger "
                        "than the halo allows; their masks may be cut)", t.number, t.index, n_cut)
        return items, rows

    def table(rows):
        df = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
        return df.astype({"label": np.uint32, "score": np.float64, "y0": np.int64,
                          "x0": np.int64, "y1": np.int64, "x1": np.int64, "centroid_y": np.float64,
                          "centroid_x": np.float64, "area": np.int64, "tile": np.int64,
                          "tile_row": np.int64, "tile_col": np.int64, "cut_by_halo": bool})

    for b0 in range(0, len(needed), bs):
        ids = needed[b0:b0 + bs]
        windows = []
        for j in ids:
            arr = np.asarray(read_fn(tiles[j].read))
            windows.append(arr[None] if arr.ndim == 2 else arr)
        dets = list(detect_fn(windows))
        if len(dets) != len(ids):
            raise ValueError(f"detect_fn returned {len(dets)} results for {len(ids)} windows")
        for j, (masks, scores) in zip(ids, dets):
            store[j] = owned_instances(tiles[j], masks, scores)
        done = ids[-1]
        while next_write < len(tiles) and final_after[next_write] <= done:
            t = tiles[next_write]
            items = [it for j in neighbours(t) for it in store[j][0]]
            out[t.core] = _paint(t.core, items)
            rows = store[next_write][1]
            rows_all.extend(rows)
            if on_tile_written is not None:
                on_tile_written(t, table(rows))
            next_write += 1
            for j in [j for j in store if final_after[j] < next_write]:
                del store[j]  # every core this tile's instances can reach is written
    return out, table(rows_all)


def default_id_stride(meta: dict) -> int:
    """Label id stride per tile of a model: the next power of two above its detections per tile.

    Examples
    --------
    >>> default_id_stride({"arch": {"box_detections_per_img": 1000}})
    1024
    """
    return 1 << int(math.ceil(math.log2(int(meta["arch"]["box_detections_per_img"]) + 1)))


def predict_instances(model: torch.nn.Module, meta: dict, image, tile_size=256, halo: int = 32,
                      batch_size: int = 2, device=None, *, score_threshold: float = 0.5,
                      mask_threshold: float = 0.5, min_area: int = 1, start: int = 0,
                      on_tile_written=None, channels=None, norm_range=None,
                      stats_max_pixels: int = 1 << 24, out=None, relabel: bool | None = None,
                      id_stride: int | None = None):
    """Instance labels and a table of a whole field, predicted tile by tile.

    Parameters
    ----------
    model : torch.nn.Module
        From :func:`train_maskrcnn` or :func:`load_checkpoint`.
    meta : dict
        The model's metadata (:func:`checkpoint_meta`): channels, normalisation.
    image : array_like
        ``(c, h, w)`` (or ``(h, w)``) field; numpy or any array supporting basic slicing
        (a zarr array: only tile windows and a strided sample are read).
    tile_size : int or (int, int) or None
        Tile core size (the zarr chunk size). None: one tile holding the whole field.
    halo : int
        Context on each side of a tile; at least the largest expected object diameter.
    batch_size : int
        Tiles per forward pass.
    device : str or torch.device, optional
        Default: the model's device. CUDA runs under autocast (bf16 if supported, else fp16).
    score_threshold : float
        Detections scoring lower are dropped.
    mask_threshold : float
        A pixel is in an instance's mask where its mask probability exceeds this.
    min_area : int
        Masks with fewer pixels (after thresholding) are dropped.
    start, on_tile_written
        Resume and progress: cores before ``start`` are neither written nor reported;
        ``on_tile_written(tile, rows)`` after each core is written, with the table rows of the
        instances the tile owns (see the module docstring for how a rule resumes).
    channels : sequence of int, optional
        Image channels to feed the model; default ``meta["channels"]``.
    norm_range : (lo, hi), optional
        Normalisation range per channel; default the field's ``p_low``/``p_high`` percentiles on a
        strided subsample of at most ``stats_max_pixels`` pixels per channel (as the U-Net).
    out : array-like, optional
        ``(h, w)`` uint32 target (e.g. a zarr array of chunk = tile).
    relabel : bool, optional
        Number instances 1..N in table order and drop table rows without pixels
        (:func:`relabel_instances`). Default: when ``out`` is None and ``start == 0``.
        Otherwise labels keep the deterministic ids ``tile * id_stride + k`` (needed to
        resume), and the caller relabels at the end, chunk by chunk, with the whole table.
    id_stride : int, optional
        Default: the next power of two above the model's ``box_detections_per_img``.

    Returns
    -------
    labels : array-like
        ``out`` or a uint32 numpy array ``(h, w)``.
    table : pandas.DataFrame
        :data:`TABLE_COLUMNS`: ``label``, ``score``, mask box ``y0, x0, y1, x1`` (end-exclusive,
        field coordinates, before overlap resolution), ``centroid_y, centroid_x`` (of the
        thresholded mask, field coordinates), ``area`` (mask pixels before overlap resolution),
        ``tile`` (row-major number) and ``tile_row, tile_col``, ``cut_by_halo`` (the owned mask
        touches the halo's outer edge inside the field: the object may be larger than the halo).
    """
    if device is None:
        device = next(model.parameters()).device
    device = _device(device)
    model = model.to(device).eval()
    amp_dtype = _amp_dtype(device, True)
    chans = [int(c) for c in (meta["channels"] if channels is None else channels)]
    if len(chans) != int(meta["arch"]["in_channels"]):
        raise ValueError(f"model takes {meta['arch']['in_channels']} channels, got {chans}")
    arr = image if hasattr(image, "shape") else np.asarray(image)
    two_d = len(arr.shape) == 2
    if two_d and chans != [0]:
        raise ValueError("a 2-D image has only channel 0")
    h, w = (int(s) for s in arr.shape[-2:])

    def channel(c, sl=(slice(None), slice(None))):
        return np.asarray(arr[sl] if two_d else arr[(c,) + tuple(sl)])

    if norm_range is None:
        step = max(1, int(math.ceil(math.sqrt(h * w / stats_max_pixels))))
        sample = np.stack([channel(c, (slice(None, None, step), slice(None, None, step)))
                           for c in chans])
        norm = meta["normalization"]
        lo, hi = percentile_range(sample, norm["p_low"], norm["p_high"])
    else:
        lo, hi = (np.asarray(v, np.float64).reshape(len(chans), 1, 1) for v in norm_range)

    def read_fn(sl):
        return apply_range(np.stack([channel(c, sl) for c in chans]), lo, hi)

    @torch.inference_mode()
    def detect_fn(windows):
        xs = [torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
              for x in windows]
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            outs = model(xs)
        res = []
        for o in outs:
            keep = o["scores"] >= score_threshold
            masks = o["masks"][keep, 0].float() > mask_threshold
            res.append((masks.cpu().numpy(), o["scores"][keep].float().cpu().numpy()))
        return res

    if id_stride is None:
        id_stride = default_id_stride(meta)
    if tile_size is None:
        tile_size = (h, w)
    if relabel is None:
        relabel = out is None and start == 0
    elif relabel and (out is not None or start != 0):
        raise ValueError("relabel needs the whole field in memory (out=None, start=0)")
    heads = model.roi_heads
    saved = heads.score_thresh
    heads.score_thresh = max(float(saved), float(score_threshold))  # don't paste masks we drop
    try:
        labels, table = _tiled_instances(detect_fn, read_fn, (h, w), tile_size, halo, batch_size,
                                         out=out, start=start, on_tile_written=on_tile_written,
                                         id_stride=id_stride, min_area=min_area)
    finally:
        heads.score_thresh = saved
    if relabel:
        labels, table = relabel_instances(labels, table)
    return labels, table
