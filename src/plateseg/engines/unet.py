"""The U-Net engine: model, losses, training, one-file checkpoints and tiled inference.

An ``smp.Unet`` (segmentation-models-pytorch, trained from scratch: ``encoder_weights=None``)
predicts three maps per pixel, in the order of :data:`HEADS`:

* ``foreground`` - BCE + soft Dice (seed 003's joint loss), optionally weighted by the U-Net
  border weight map (w0 = 10, sigma = 5);
* ``boundary`` between touching nuclei - BCE with a positive-class weight (targets: pixels claimed
  by two dilated objects, seed 004);
* ``centre`` heatmap - CenterNet's penalty-reduced focal loss on a Gaussian per object centre
  (seed 000).

Training samples are random crops with gentle augmentation (scale, flips, 90-degree rotations,
intensity jitter) drawn by a seeded numpy generator per ``(seed, epoch, sample)``, so a run is
reproducible on CPU whatever the number of loader workers. Images are normalised per image and
channel by percentiles (:mod:`plateseg.engines.normalize`). On CUDA, training and inference use autocast
(bf16 if supported, else fp16 with a gradient scaler) and channels_last.

A checkpoint is one file (``torch.save`` of a dict of plain types and tensors, loadable with
``weights_only=True``) holding everything inference needs; see :func:`checkpoint_meta`.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from plateseg.engines.normalize import apply_range, percentile_range
from plateseg.engines.targets import boundary_target, object_centres, render_heatmap, unet_weight_map
from plateseg.tiling.grid import Tile, predict_tiled
from plateseg.segment.watershed import instances_from_maps
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
    "HEADS",
    "UNetParams",
    "build_unet",
    "unet_loss",
    "dice_loss",
    "focal_loss",
    "TrainingSet",
    "seed_everything",
    "train_unet",
    "evaluate_maps",
    "checkpoint_meta",
    "save_checkpoint",
    "load_checkpoint",
    "predict_maps",
    "CODE_MODULES",
]

LOG = logging.getLogger("plateseg.engines.unet")

HEADS = ("foreground", "boundary", "centre")
CHECKPOINT_FORMAT = "plateseg-unet"
CHECKPOINT_VERSION = 1
CODE_MODULES = ("plateseg.engines.unet", "plateseg.engines.runtime", "plateseg.engines.targets", "plateseg.engines.normalize", "plateseg.tiling.grid")
_CENTRE_BIAS = -2.19  # CenterNet: heatmap head starts at p = 0.1


@dataclass
class UNetParams:
    """All settings of a U-Net training run (the science ones belong in the pipeline config).

    Architecture: ``encoder_name`` (any smp encoder, e.g. ``resnet18`` on CPU, ``resnet34`` or
    larger on GPU, ``tu-<timm name>``), ``encoder_depth``, ``decoder_channels`` (one per
    depth), ``decoder_attention_type`` (None or ``"scse"``), ``channels`` (indices of the image
    channels fed to the model; ``in_channels = len(channels)``).

    Normalisation: ``p_low``, ``p_high`` percentiles per image and channel; ``pixel_size`` the
    images were acquired at (recorded only).

    Targets: ``boundary_width`` (dilation radius, px), ``heatmap_sigma`` (px),
    ``heatmap_sigma_relative`` (None, or a fraction of each object's equivalent radius),
    ``weight_map`` (use the U-Net border weights on the foreground BCE), ``w0``, ``w_sigma``.

    Loss: ``loss_weights`` for (foreground, boundary, centre), ``boundary_pos_weight``,
    ``focal_alpha``, ``focal_beta`` (CenterNet: 2, 4).

    Optimisation: ``epochs``, ``samples_per_epoch`` (None: the number of images, at least one
    batch), ``batch_size``, ``crop_size`` (a multiple of ``2 ** encoder_depth``), ``lr``,
    ``weight_decay`` (AdamW), ``warmup_steps`` then cosine decay to ``lr * min_lr_ratio``,
    ``grad_clip`` (max gradient norm or None).

    Augmentation: ``flips``, ``rot90``, ``scale_range`` (log-uniform zoom), ``intensity_jitter``
    (multiplicative and additive, on the normalised image).

    Runtime: ``seed``, ``device`` ("auto", "cpu", "cuda", "cuda:1"), ``amp`` and
    ``channels_last`` (CUDA only), ``num_workers`` (data loader processes).

    Validation (each ``val_every`` epochs and after the last): tiled prediction with
    ``val_tile_size``/``val_halo``, instances by ``val_mode`` watershed.
    """

    encoder_name: str = "resnet18"
    encoder_depth: int = 5
    decoder_channels: tuple = (128, 64, 32, 16, 16)
    decoder_attention_type: str | None = None
    channels: tuple = (0,)
    p_low: float = 1.0
    p_high: float = 99.8
    pixel_size: float | None = None
    boundary_width: float = 2.0
    heatmap_sigma: float = 2.0
    heatmap_sigma_relative: float | None = None
    weight_map: bool = False
    w0: float = 10.0
    w_sigma: float = 5.0
    loss_weights: tuple = (1.0, 1.0, 1.0)
    boundary_pos_weight: float = 3.0
    focal_alpha: float = 2.0
    focal_beta: float = 4.0
    epochs: int = 20
    samples_per_epoch: int | None = None
    batch_size: int = 8
    crop_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 20
    min_lr_ratio: float = 0.05
    grad_clip: float | None = 5.0
    flips: bool = True
    rot90: bool = True
    scale_range: tuple = (0.8, 1.25)
    intensity_jitter: float = 0.1
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    num_workers: int = 0
    val_every: int = 1
    val_tile_size: int = 256
    val_halo: int = 32
    val_mode: str = "boundary"

    @classmethod
    def coerce(cls, params=None) -> "UNetParams":
        """A :class:`UNetParams` from None, an instance or a dict (unknown keys are an error).

        Examples
        --------
        >>> UNetParams.coerce({"epochs": 2, "channels": [1]}).channels
        (1,)
        """
        from plateseg.config.checks import coerce_params

        return coerce_params(cls, params, "U-Net")

    def validate(self) -> None:
        if len(self.decoder_channels) != self.encoder_depth:
            raise ValueError(f"decoder_channels {self.decoder_channels} needs one entry per "
                             f"encoder_depth ({self.encoder_depth})")
        if self.crop_size % (2 ** self.encoder_depth):
            raise ValueError(f"crop_size {self.crop_size} must be a multiple of "
                             f"{2 ** self.encoder_depth}")
        if len(self.loss_weights) != len(HEADS):
            raise ValueError("loss_weights needs one weight per head")
        if not self.channels:
            raise ValueError("channels must name at least one image channel")


# --------------------------------------------------------------------------- model

def build_unet(encoder_name: str = "resnet18", encoder_depth: int = 5,
               decoder_channels: Sequence[int] = (128, 64, 32, 16, 16),
               decoder_attention_type: str | None = None, in_channels: int = 1,
               classes: int = len(HEADS)) -> torch.nn.Module:
    """An ``smp.Unet`` with random weights and ``classes`` logit maps.

    The centre head's bias starts at -2.19 (sigmoid 0.1), as in CenterNet, so that the focal
    loss does not start dominated by the many negatives.

    Examples
    --------
    >>> m = build_unet("resnet18", 3, (32, 16, 8))
    >>> m(torch.zeros(1, 1, 32, 32)).shape
    torch.Size([1, 3, 32, 32])
    """
    import segmentation_models_pytorch as smp

    model = smp.Unet(
        encoder_name=encoder_name,
        encoder_depth=int(encoder_depth),
        encoder_weights=None,
        decoder_channels=tuple(int(c) for c in decoder_channels),
        decoder_attention_type=decoder_attention_type,
        in_channels=int(in_channels),
        classes=int(classes),
    )
    head = model.segmentation_head[0]
    if classes >= 3 and head.bias is not None:
        with torch.no_grad():
            head.bias[2] = _CENTRE_BIAS
    return model


def _arch(p: UNetParams) -> dict:
    return {
        "name": "smp.Unet",
        "encoder_name": p.encoder_name,
        "encoder_depth": int(p.encoder_depth),
        "decoder_channels": [int(c) for c in p.decoder_channels],
        "decoder_attention_type": p.decoder_attention_type,
        "in_channels": len(p.channels),
        "classes": len(HEADS),
    }


def _model_from_arch(arch: dict) -> torch.nn.Module:
    if arch.get("name") != "smp.Unet":
        raise ValueError(f"unknown architecture {arch.get('name')!r}")
    return build_unet(arch["encoder_name"], arch["encoder_depth"], arch["decoder_channels"],
                      arch["decoder_attention_type"], arch["in_channels"], arch["classes"])


# --------------------------------------------------------------------------- losses

def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft Dice loss ``1 - (2 sum(p t) + eps) / (sum(p) + sum(t) + eps)`` over the batch."""
    p = torch.sigmoid(logits)
    inter = (p * target).sum()
    return 1.0 - (2.0 * inter + eps) / (p.sum() + target.sum() + eps)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 2.0,
               beta: float = 4.0) -> torch.Tensor:
    """CenterNet's penalty-reduced pixel-wise focal loss (Zhou et al. 2019; seed 000).

    Positives are pixels where the target heatmap is 1; negatives are down-weighted by
    ``(1 - target) ** beta`` near centres. Normalised by the number of positives (at least 1).

    Examples
    --------
    >>> t = torch.zeros(1, 5, 5); t[0, 2, 2] = 1
    >>> good, bad = torch.full((1, 5, 5), -5.0), torch.full((1, 5, 5), 5.0)
    >>> good[0, 2, 2] = 5.0
    >>> bool(focal_loss(good, t) < focal_loss(bad, t))
    True
    """
    logits = logits.float()
    target = target.float()
    pos = (target >= 1.0 - 1e-4).float()
    p = torch.sigmoid(logits)
    log_p = F.logsigmoid(logits)
    log_1mp = F.logsigmoid(-logits)
    pos_loss = (log_p * (1.0 - p) ** alpha * pos).sum()
    neg_loss = (log_1mp * p ** alpha * (1.0 - target) ** beta * (1.0 - pos)).sum()
    return -(pos_loss + neg_loss) / pos.sum().clamp(min=1.0)


def unet_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
              params: UNetParams | dict | None = None) -> tuple[torch.Tensor, dict]:
    """Total loss and its parts for logits and targets ``(n, 3, h, w)`` in :data:`HEADS` order.

    ``weight`` ``(n, 1, h, w)`` (optional) weights the foreground BCE (U-Net weight map).

    Returns
    -------
    total : torch.Tensor
        ``w_fg * (BCE + Dice) + w_boundary * BCE(pos_weight) + w_centre * focal``.
    parts : dict
        Float values of ``foreground``, ``boundary``, ``centre``.
    """
    p = UNetParams.coerce(params) if not isinstance(params, UNetParams) else params
    logits = logits.float()
    fg_l, bd_l, ct_l = logits[:, 0], logits[:, 1], logits[:, 2]
    fg_t, bd_t, ct_t = target[:, 0], target[:, 1], target[:, 2]
    w = None if weight is None else weight[:, 0]
    fg = F.binary_cross_entropy_with_logits(fg_l, fg_t, weight=w) + dice_loss(fg_l, fg_t)
    bd = F.binary_cross_entropy_with_logits(
        bd_l, bd_t, pos_weight=torch.tensor(float(p.boundary_pos_weight), device=logits.device))
    ct = focal_loss(ct_l, ct_t, p.focal_alpha, p.focal_beta)
    wf, wb, wc = (float(x) for x in p.loss_weights)
    total = wf * fg + wb * bd + wc * ct
    return total, {"foreground": float(fg.detach()), "boundary": float(bd.detach()),
                   "centre": float(ct.detach())}


# --------------------------------------------------------------------------- data



class TrainingSet(torch.utils.data.Dataset):
    """Augmented random crops with their targets, reproducible per ``(seed, epoch, index)``.

    Parameters
    ----------
    images : sequence of array_like
        ``(c, h, w)`` (or ``(h, w)``) images; ``params.channels`` are used.
    masks : sequence of array_like
        ``(h, w)`` instance labels.
    params : UNetParams or dict

    Notes
    -----
    Item ``i`` of epoch ``e`` is drawn from image ``perm_e[i % n]`` (a seeded permutation per
    epoch) with ``numpy.random.default_rng([seed, e, i])``: zoom ``s`` log-uniform in
    ``scale_range``, a random crop (images smaller than the crop are centred and padded with
    0 = the normalised low percentile, labels 0), intensity jitter, then a flip and a 90-degree
    rotation. Targets are made after zooming: boundary and weight map on the crop plus a margin,
    the heatmap from each object's centre in the *whole* image mapped through the same transform
    (so objects cut by the crop keep their true centre).

    Each item is ``(x (c, S, S), y (3, S, S), w (1, S, S))`` float32 tensors.
    """

    def __init__(self, images, masks, params=None):
        self.p = UNetParams.coerce(params)
        if len(images) != len(masks) or not len(images):
            raise ValueError("need as many masks as images (and at least one)")
        self.images, self.masks, self.centres, self.radius = [], [], [], []
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
            ids, cen = object_centres(lab)
            self.centres.append(cen.astype(np.float64))
            areas = np.bincount(lab.ravel())[ids] if len(ids) else np.zeros(0)
            self.radius.append(np.sqrt(areas / np.pi))
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
        x, y, w = self.sample(int(self._perm[i]), rng)
        return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(w)

    def sample(self, k: int, rng: np.random.Generator):
        """One augmented crop of image ``k``: ``(x, y, w)`` numpy float32 arrays."""
        p = self.p
        img, lab = self.images[k], self.masks[k]
        h, w = lab.shape
        S = int(p.crop_size)
        margin = int(math.ceil(p.boundary_width)) + 2 + (int(math.ceil(2 * p.w_sigma)) if p.weight_map else 0)
        O = S + 2 * margin
        lo_s, hi_s = p.scale_range
        s = float(math.exp(rng.uniform(math.log(lo_s), math.log(hi_s)))) if hi_s > lo_s else float(lo_s)
        core = S / s  # source extent of the crop
        origin = []
        for n in (h, w):
            start = rng.uniform(0.0, n - core) if n > core else (n - core) / 2.0
            origin.append(start - margin / s)
        xs = np.stack([_affine(c, s, origin, O, 1) for c in img])
        labs = _affine(lab, s, origin, O, 0)
        crop = (slice(margin, margin + S), slice(margin, margin + S))
        fg = (labs[crop] > 0).astype(np.float32)
        bd = boundary_target(labs, p.boundary_width)[crop]
        # centres of the whole image mapped into the crop
        cen = (self.centres[k] - np.asarray(origin) + 0.5) * s - 0.5 - margin
        if p.heatmap_sigma_relative is not None:
            sig = np.maximum(p.heatmap_sigma, p.heatmap_sigma_relative * self.radius[k] * s)
        else:
            sig = np.full(len(cen), float(p.heatmap_sigma))
        reach = 3 * sig + 1
        near = ((cen[:, 0] > -reach) & (cen[:, 0] < S + reach)
                & (cen[:, 1] > -reach) & (cen[:, 1] < S + reach))
        ct = render_heatmap((S, S), cen[near], sig[near])
        if p.weight_map:
            wm = unet_weight_map(labs, p.w0, p.w_sigma)[crop]
        else:
            wm = np.ones((S, S), np.float32)
        x = xs[(slice(None),) + crop]
        if p.intensity_jitter > 0:
            j = p.intensity_jitter
            gain = 1.0 + rng.uniform(-j, j, size=(x.shape[0], 1, 1))
            bias = rng.uniform(-j, j, size=(x.shape[0], 1, 1))
            x = x * gain + bias
        y = np.stack([fg, bd, ct])
        stack = np.concatenate([x, y, wm[None]]).astype(np.float32)
        if p.rot90:
            stack = np.rot90(stack, int(rng.integers(4)), axes=(1, 2))
        if p.flips and rng.random() < 0.5:
            stack = stack[:, :, ::-1]
        stack = np.ascontiguousarray(stack)
        c = x.shape[0]
        return stack[:c], stack[c:c + 3], stack[c + 3:]


# --------------------------------------------------------------------------- training









def evaluate_maps(maps: np.ndarray, labels: np.ndarray, mode: str = "boundary") -> dict:
    """Monitoring metrics of one image's maps against its labels (not the benchmark metrics).

    Returns foreground Dice (threshold 0.5) and, for instances from
    :func:`~plateseg.segment.watershed.instances_from_maps`, F1 at IoU 0.5 and the DSB-style mean over
    IoU thresholds 0.5:0.05:0.95 of TP / (TP + FP + FN), both by :mod:`plateseg.evaluation.metrics` with the
    Kaggle rule (a match needs IoU > t). Also the raw counts so that callers can pool over images.

    Examples
    --------
    >>> lab = np.zeros((20, 20), int); lab[2:8, 2:8] = 1; lab[10:18, 10:18] = 2
    >>> maps = np.stack([(lab > 0) * 1.0, np.zeros((20, 20)), np.zeros((20, 20))])
    >>> r = evaluate_maps(maps, lab)
    >>> r["dice"], r["f1_50"], r["ap"]
    (1.0, 1.0, 1.0)
    """
    from plateseg.evaluation.metrics import dsb_map, matching

    fg_p = np.asarray(maps[0]) >= 0.5
    fg_t = np.asarray(labels) > 0
    denom = fg_p.sum() + fg_t.sum()
    inter = float((fg_p & fg_t).sum())
    dice = 1.0 if denom == 0 else 2.0 * inter / float(denom)
    pred = instances_from_maps(maps, mode=mode)
    m = matching(labels, pred, thresh=0.5, tie="gt")
    ng, npred, tp50 = m["n_true"], m["n_pred"], m["tp"]
    f1 = 1.0 if ng + npred == 0 else 2.0 * tp50 / (ng + npred)
    return {"dice": dice, "f1_50": f1, "ap": dsb_map(labels, pred, tie="gt"), "inter": inter,
            "fg_sum": float(denom), "tp50": tp50, "n_gt": ng, "n_pred": npred}


def _validate(model, meta, val, p: UNetParams, device) -> dict:
    images, masks = val
    stats = []
    for img, lab in zip(images, masks):
        maps = predict_maps(model, meta, img, p.val_tile_size, p.val_halo, p.batch_size, device)
        stats.append(evaluate_maps(maps, lab, p.val_mode))
    inter = sum(s["inter"] for s in stats)
    fg_sum = sum(s["fg_sum"] for s in stats)
    tp = sum(s["tp50"] for s in stats)
    n = sum(s["n_gt"] + s["n_pred"] for s in stats)
    return {
        "val_dice": 1.0 if fg_sum == 0 else 2.0 * inter / fg_sum,
        "val_f1_50": 1.0 if n == 0 else 2.0 * tp / n,
        "val_ap": float(np.mean([s["ap"] for s in stats])),
    }


def train_unet(images, masks, params=None, log: logging.Logger | None = None, val=None,
               on_epoch_end: Callable[[dict], bool | None] | None = None, initial_weights: dict | None = None):
    """Train a U-Net from scratch on annotated images.

    Parameters
    ----------
    images : sequence of array_like
        Training images ``(c, h, w)`` (any size, any numeric dtype).
    masks : sequence of array_like
        Instance labels ``(h, w)``.
    params : UNetParams or dict, optional
        Settings; see :class:`UNetParams`.
    log : logging.Logger, optional
        Receives one INFO line per epoch (losses, learning rate, seconds, validation metrics).
        Default: the ``plateseg.engines.unet`` logger.
    val : tuple of (images, masks), optional
        Held-out images for per-epoch validation metrics.
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
        One record per epoch: ``epoch``, ``loss``, ``loss_foreground``, ``loss_boundary``,
        ``loss_centre``, ``lr``, ``seconds``, ``steps`` and, when validated, ``val_dice``,
        ``val_f1_50``, ``val_ap``.

    Notes
    -----
    Seeds Python, numpy and torch (global state) and, on CPU, turns on
    ``torch.use_deterministic_algorithms(True, warn_only=True)`` for the duration of the call:
    two runs with the same inputs and parameters give the same weights on CPU.
    """
    p = UNetParams.coerce(params)
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
    if cuda and p.channels_last:
        model = model.to(memory_format=torch.channels_last)
    data = TrainingSet(images, masks, p)
    loader_gen = torch.Generator().manual_seed(p.seed)
    loader = torch.utils.data.DataLoader(
        data, batch_size=p.batch_size, shuffle=False, num_workers=p.num_workers,
        pin_memory=cuda, drop_last=False, generator=loader_gen,
        persistent_workers=False)
    steps_per_epoch = len(loader)
    total = steps_per_epoch * p.epochs
    opt = torch.optim.AdamW(model.parameters(), lr=p.lr, weight_decay=p.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: _lr_factor(s, total, min(p.warmup_steps, total // 2), p.min_lr_ratio))
    amp_dtype = _amp_dtype(device, p.amp)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    meta = checkpoint_meta(p)
    history = []
    log.info("training U-Net %s on %d images (%s), %d epochs x %d steps of %d crops %dpx",
             p.encoder_name, len(data.images), device, p.epochs, steps_per_epoch,
             p.batch_size, p.crop_size)
    for epoch in range(p.epochs):
        t0 = time.perf_counter()
        model.train()
        data.set_epoch(epoch)
        sums = {"loss": 0.0, "foreground": 0.0, "boundary": 0.0, "centre": 0.0}
        n_seen = 0
        for x, y, w in loader:
            x, y, w = (t.to(device, non_blocking=True) for t in (x, y, w))
            if cuda and p.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = model(x)
            loss, parts = unet_loss(logits, y, w if p.weight_map else None, p)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
            else:
                loss.backward()
            if p.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), p.grad_clip)
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            sched.step()
            n = x.shape[0]
            n_seen += n
            sums["loss"] += float(loss.detach()) * n
            for k, v in parts.items():
                sums[k] += v * n
        rec = {"epoch": epoch + 1, "loss": sums["loss"] / n_seen,
               "loss_foreground": sums["foreground"] / n_seen,
               "loss_boundary": sums["boundary"] / n_seen,
               "loss_centre": sums["centre"] / n_seen,
               "lr": float(opt.param_groups[0]["lr"]), "steps": steps_per_epoch}
        msg = ""
        if val is not None and ((epoch + 1) % max(p.val_every, 1) == 0 or epoch + 1 == p.epochs):
            model.eval()
            rec.update(_validate(model, meta, val, p, device))
            msg = " | val dice {val_dice:.3f} F1@0.5 {val_f1_50:.3f} AP {val_ap:.3f}".format(**rec)
        rec["seconds"] = time.perf_counter() - t0
        history.append(rec)
        log.info("epoch %d/%d loss %.4f (fg %.4f boundary %.4f centre %.4f) lr %.2e %.1f s%s",
                 epoch + 1, p.epochs, rec["loss"], rec["loss_foreground"], rec["loss_boundary"],
                 rec["loss_centre"], rec["lr"], rec["seconds"], msg)
        if on_epoch_end is not None and on_epoch_end(rec) is True and epoch + 1 < p.epochs:
            log.info("stopped after epoch %d of %d by on_epoch_end", epoch + 1, p.epochs)
            break
    model.eval()
    return model, history


# --------------------------------------------------------------------------- checkpoints



def checkpoint_meta(params=None, data_hash: str | None = None, history: list | None = None,
                    **extra) -> dict:
    """Everything inference needs to know about a model, besides its weights.

    Keys: ``format``, ``format_version``, ``arch`` (``name``, ``encoder_name``,
    ``encoder_depth``, ``decoder_channels``, ``decoder_attention_type``, ``in_channels``,
    ``classes``), ``heads`` (output order), ``channels`` (image channels used),
    ``normalization`` (``method: percentile``, ``p_low``, ``p_high``, per image and channel),
    ``pixel_size``, ``data_hash``, ``code_version``, ``targets`` (target settings), ``params``
    (all training settings), ``history``, ``versions`` (torch, smp), plus ``extra`` keys
    (plain Python values, e.g. ``fold=2``).

    Examples
    --------
    >>> m = checkpoint_meta({"encoder_name": "resnet18"}, data_hash="abc")
    >>> m["heads"], m["channels"], m["normalization"]["p_high"]
    (['foreground', 'boundary', 'centre'], [0], 99.8)
    """
    import segmentation_models_pytorch as smp

    p = UNetParams.coerce(params) if not isinstance(params, UNetParams) else params
    meta = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "arch": _arch(p),
        "heads": list(HEADS),
        "channels": [int(c) for c in p.channels],
        "normalization": {"method": "percentile", "p_low": float(p.p_low),
                          "p_high": float(p.p_high), "per": "image and channel"},
        "pixel_size": None if p.pixel_size is None else float(p.pixel_size),
        "data_hash": data_hash,
        "code_version": code_version(CODE_MODULES),
        "targets": {"boundary_width": p.boundary_width, "heatmap_sigma": p.heatmap_sigma,
                    "heatmap_sigma_relative": p.heatmap_sigma_relative},
        "params": {k: (list(v) if isinstance(v, tuple) else v)
                   for k, v in dataclasses.asdict(p).items()},
        "history": list(history or []),
        "versions": {"torch": str(torch.__version__),
                     "segmentation_models_pytorch": str(smp.__version__)},
    }
    meta.update(extra)
    return meta


_REQUIRED = ("arch", "heads", "channels", "normalization")


def save_checkpoint(path, model: torch.nn.Module, meta: dict) -> None:
    """Write model weights and ``meta`` (see :func:`checkpoint_meta`) to one file, atomically.

    The file is written under a temporary name in the same folder and moved into place with
    :func:`os.replace`, so a killed job never leaves a truncated checkpoint. Weights are stored
    on CPU, contiguous (channels_last is a runtime layout, not part of the model).
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


# --------------------------------------------------------------------------- inference

def predict_maps(model: torch.nn.Module, meta: dict, image, tile_size=256, halo: int = 32,
                 batch_size: int = 4, device=None, *, out=None, start: int = 0,
                 on_tile_written: Callable[[Tile], None] | None = None, channels=None,
                 norm_range=None, stats_max_pixels: int = 1 << 24, trim: int | None = None):
    """Per-pixel probability maps of a whole field, predicted tile by tile.

    Parameters
    ----------
    model : torch.nn.Module
        From :func:`train_unet` or :func:`load_checkpoint`.
    meta : dict
        The model's metadata (:func:`checkpoint_meta`): channels, normalisation, depth.
    image : array_like
        ``(c, h, w)`` (or ``(h, w)``) field; numpy or any array supporting basic slicing
        (e.g. a zarr array: only tiles and a strided sample are read).
    tile_size : int or (int, int) or None
        Tile core size (the zarr chunk size). None: one tile holding the whole field.
    halo : int
        Context on each side of a tile.
    batch_size : int
        Tiles per forward pass.
    device : str or torch.device, optional
        Default: the model's device.
    out : array-like, optional
        ``(3, h, w)`` float32 target (e.g. a zarr array); see :func:`plateseg.tiling.grid.predict_tiled`.
    start, on_tile_written
        Resume and progress hooks, see :func:`plateseg.tiling.grid.predict_tiled`.
    channels : sequence of int, optional
        Image channels to feed the model; default ``meta["channels"]``.
    norm_range : (lo, hi), optional
        Normalisation range per channel (shape ``(c, 1, 1)``); default the field's
        ``p_low``/``p_high`` percentiles, computed on a strided subsample of at most
        ``stats_max_pixels`` pixels per channel.
    trim : int, optional
        Outer halo pixels left out of the blend (:func:`plateseg.tiling.grid.blend_window`);
        default ``halo // 2``: the taper covers the inner half of the halo. (A CNN's output
        is least reliable near its window edge; on a small test U-Net, trimming half the halo
        halved the tiled-vs-untiled difference compared with blending over the whole halo.)

    Returns
    -------
    array-like
        ``out`` or a float32 numpy array ``(3, h, w)``, sigmoid probabilities in
        ``meta["heads"]`` order.

    Notes
    -----
    Tiles whose window (``tile_size + 2 * halo``) is not a multiple of ``2 ** encoder_depth``
    are reflect-padded to one and cropped back. On CUDA the forward pass runs under autocast
    (bf16 if supported, else fp16) in channels_last layout; on CPU in float32.
    """
    if device is None:
        device = next(model.parameters()).device
    device = _device(device)
    model = model.to(device).eval()
    cuda = device.type == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    amp_dtype = _amp_dtype(device, True)
    chans = [int(c) for c in (meta["channels"] if channels is None else channels)]
    if len(chans) != int(meta["arch"]["in_channels"]):
        raise ValueError(f"model takes {meta['arch']['in_channels']} channels, got {chans}")
    arr = image if hasattr(image, "shape") else np.asarray(image)
    two_d = len(arr.shape) == 2
    h, w = (int(s) for s in arr.shape[-2:])

    def channel(c, sl=(slice(None), slice(None))):
        return np.asarray(arr[sl] if two_d else arr[(c,) + tuple(sl)])

    if two_d and chans != [0]:
        raise ValueError("a 2-D image has only channel 0")
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

    mult = 2 ** int(meta["arch"]["encoder_depth"])

    @torch.inference_mode()
    def predict_fn(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        H, W = x.shape[-2:]
        ph, pw = (-H) % mult, (-W) % mult
        if ph or pw:
            mode = "reflect" if ph < H and pw < W else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        x = x.to(device, non_blocking=True)
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(x)
        prob = torch.sigmoid(logits.float())[..., :H, :W]
        return prob.cpu().numpy()

    if tile_size is None:
        tile_size = (h, w)
    if trim is None:
        trim = int(halo) // 2
    return predict_tiled(predict_fn, read_fn, (h, w), tile_size, halo, batch_size, out,
                         start=start, on_tile_written=on_tile_written, trim=trim)
