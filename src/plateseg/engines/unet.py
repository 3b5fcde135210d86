"""The U-Net engine: model, losses, training, one-file checkpoints and tiled inference.

An ``smp.Unet`` (segmentation-models-pytorch, trained from scratch: ``encoder_weights=None``)
predicts three maps per pixel, in the order of :data:`HEADS`:

* ``foreground`` - BCE + soft Dice (seed 003's joint loss), optionally weighted by the U-Net
  border weight map (w0 = 10, sigma = 5);
* ``boundary`` between touching nuclei - BCE with a positive-class weight (targets: pixels claimed
  by two dilated objects, seed 004);
* ``centre`` heatmap - CenterNet's penalty-reduced focal loss on a Gaussian per object centre
  (seed 000).

Settings, training crops, the training loop, checkpoints and the prediction set-up are the
engine base's (:mod:`plateseg.engines.base`): random crops with gentle augmentation drawn by a
seeded numpy generator per ``(seed, epoch, sample)``, reproducible on CPU whatever the number of
loader workers; images normalised per image and channel by percentiles. On CUDA, training and
inference use autocast (bf16 if supported, else fp16 with a gradient scaler) and channels_last.

A checkpoint is one file (``torch.save`` of a dict of plain types and tensors, loadable with
``weights_only=True``) holding everything inference needs; see :func:`checkpoint_meta`.
Fold validation segments with the configured watershed (``val_watershed``).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from plateseg.engines.base import (CropDataset, EngineParams, base_meta, checkpoint_io,
                                   bind_validation, field_reader, fit)
from plateseg.engines.runtime import amp_dtype as _amp_dtype, resolve_device as _device, seed_everything
from plateseg.engines.targets import boundary_target, object_centres, render_heatmap, unet_weight_map
from plateseg.tiling.blend import predict_tiled
from plateseg.tiling.grid import Tile

__all__ = ["HEADS", "UNetParams", "build_unet", "unet_loss", "dice_loss", "focal_loss", "TrainingSet",
           "seed_everything", "train_unet", "checkpoint_meta", "save_checkpoint",
           "load_checkpoint", "predict_maps"]

log = logging.getLogger(__name__)

HEADS = ("foreground", "boundary", "centre")
CHECKPOINT_FORMAT = "plateseg-unet"
CHECKPOINT_VERSION = 1
_CENTRE_BIAS = -2.19  # CenterNet: heatmap head starts at p = 0.1


@dataclass
class UNetParams(EngineParams):
    """All settings of a U-Net training run: :class:`~plateseg.engines.base.EngineParams` plus these.

    Architecture: ``encoder_name`` (any smp encoder, e.g. ``resnet18`` on CPU, ``resnet34`` or
    larger on GPU, ``tu-<timm name>``), ``encoder_depth``, ``decoder_channels`` (one per
    depth), ``decoder_attention_type`` (None or ``"scse"``); ``in_channels = len(channels)``.

    Targets: ``boundary_width`` (dilation radius, px), ``heatmap_sigma`` (px),
    ``heatmap_sigma_relative`` (None, or a fraction of each object's equivalent radius),
    ``weight_map`` (use the U-Net border weights on the foreground BCE), ``w0``, ``w_sigma``.

    Loss: ``loss_weights`` for (foreground, boundary, centre), ``boundary_pos_weight``,
    ``focal_alpha``, ``focal_beta`` (CenterNet: 2, 4).

    ``crop_size`` must be a multiple of ``2 ** encoder_depth``; ``channels_last`` (CUDA only)
    is a runtime layout. Validation instances come from
    :func:`~plateseg.segment.watershed.instances_from_maps` with the keyword arguments
    ``val_watershed`` (None: its defaults; the workflow passes the configured watershed).

    Defaults are those of the workflow's config schema (``unet:``).
    """

    encoder_name: str = "resnet18"
    encoder_depth: int = 4
    decoder_channels: tuple = (64, 32, 16, 16)
    decoder_attention_type: str | None = None
    # targets
    boundary_width: float = 2.0
    heatmap_sigma: float = 2.0
    heatmap_sigma_relative: float | None = None
    weight_map: bool = False
    w0: float = 10.0
    w_sigma: float = 5.0
    # loss
    boundary_pos_weight: float = 3.0
    loss_weights: tuple = (1.0, 1.0, 1.0)
    focal_alpha: float = 2.0
    focal_beta: float = 4.0
    samples_per_epoch: int | None = 64
    crop_size: int = 128
    lr: float = 3e-3
    warmup_steps: int = 5
    channels_last: bool = True
    val_every: int = 5
    val_watershed: dict | None = None

    _what = "U-Net"

    def validate(self) -> None:
        """Raise ValueError on inconsistent settings.

        Examples
        --------
        >>> UNetParams.coerce({"epochs": 2, "channels": [1]}).channels
        (1,)
        >>> UNetParams.coerce({"crop_size": 100})
        Traceback (most recent call last):
        ...
        ValueError: crop_size 100 must be a multiple of 16
        """
        super().validate()
        if len(self.decoder_channels) != self.encoder_depth:
            raise ValueError(f"decoder_channels {self.decoder_channels} needs one entry per "
                             f"encoder_depth ({self.encoder_depth})")
        if self.crop_size % (2 ** self.encoder_depth):
            raise ValueError(f"crop_size {self.crop_size} must be a multiple of "
                             f"{2 ** self.encoder_depth}")
        if len(self.loss_weights) != len(HEADS):
            raise ValueError("loss_weights needs one weight per head")


# --------------------------------------------------------------------------- model

def build_unet(encoder_name: str = "resnet18", encoder_depth: int = 4,
               decoder_channels: Sequence[int] = (64, 32, 16, 16),
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

class TrainingSet(CropDataset):
    """Augmented random crops with their targets, reproducible per ``(seed, epoch, index)``.

    ``TrainingSet(images, masks, params)`` with ``params`` a :class:`UNetParams` or dict, as
    :class:`~plateseg.engines.base.CropDataset`, whose crops these are. Targets are made after zooming: boundary and weight map on the crop plus a margin, the
    heatmap from each object's centre in the *whole* image mapped through the same transform (so
    objects cut by the crop keep their true centre).

    Each item is ``(x (c, S, S), y (3, S, S), w (1, S, S))`` float32 tensors.

    Examples
    --------
    >>> lab = np.zeros((40, 40), int); lab[10:20, 10:20] = 1
    >>> x, y, w = TrainingSet([lab * 100.0], [lab], {"encoder_depth": 3,
    ...                       "decoder_channels": [8, 8, 8], "crop_size": 32})[0]
    >>> tuple(x.shape), tuple(y.shape), tuple(w.shape)
    ((1, 32, 32), (3, 32, 32), (1, 32, 32))
    """

    params_class = UNetParams

    def setup(self) -> None:
        p = self.p
        self.margin = (int(math.ceil(p.boundary_width)) + 2
                       + (int(math.ceil(2 * p.w_sigma)) if p.weight_map else 0))
        self.centres, self.radius = [], []
        for lab in self.masks:
            ids, cen = object_centres(lab)
            self.centres.append(cen.astype(np.float64))
            areas = np.bincount(lab.ravel())[ids] if len(ids) else np.zeros(0)
            self.radius.append(np.sqrt(areas / np.pi))

    def item(self, x, planes):
        return torch.from_numpy(x), torch.from_numpy(planes[:3]), torch.from_numpy(planes[3:])

    def sample(self, k: int, rng: np.random.Generator):
        """One augmented crop of image ``k``: ``(x, y, w)`` numpy float32 arrays."""
        x, planes = self.crop(k, rng)
        return x, planes[:3], planes[3:]

    def target_planes(self, k, labs, s, origin):
        """Foreground, boundary, centre heatmap and weight map of the crop, ``(4, S, S)``."""
        p, margin, S = self.p, self.margin, int(self.p.crop_size)
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
        return np.stack([fg, bd, ct, wm])


# --------------------------------------------------------------------------- training

def train_unet(images, masks, params=None, log: logging.Logger | None = None, val=None, validate=None,
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
        One INFO line per epoch; default the ``plateseg.engines.unet`` logger.
    val : tuple of (images, masks), optional
        Held-out images for per-epoch validation metrics, scored by ``validate``.
    validate : callable, optional
        ``validate(model, meta, val, params, device) -> dict`` of metrics (needed with ``val``):
        :func:`plateseg.pipeline.validation.validate_unet` segments with ``val_watershed``. The
        engine itself knows no watershed or metrics.
    on_epoch_end, initial_weights
        A stop hook (for wall-time guards) and a state dict of the same architecture to start
        from (continue training, fine-tune a checkpoint); see :func:`plateseg.engines.base.fit`.

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
    The loop is :func:`plateseg.engines.base.fit`: two runs with the same inputs and parameters
    give the same weights on CPU.

    Examples
    --------
    >>> lab = np.zeros((32, 32), int); lab[8:20, 8:20] = 1
    >>> model, hist = train_unet([lab * 100.0], [lab], {"encoder_depth": 3, "crop_size": 32,
    ...     "decoder_channels": [8, 8, 8], "epochs": 1, "batch_size": 2, "device": "cpu"})
    >>> [sorted(r) for r in hist][0][:3]
    ['epoch', 'loss', 'loss_boundary']
    """
    p = UNetParams.coerce(params)
    meta = checkpoint_meta(p)
    cuda_layout = p.channels_last

    def batch_loss(model, batch, device, amp_dtype):
        x, y, w = (t.to(device, non_blocking=True) for t in batch)
        if device.type == "cuda" and cuda_layout:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(x)
        loss, parts = unet_loss(logits, y, w if p.weight_map else None, p)
        return loss, x.shape[0], {f"loss_{k}": v for k, v in parts.items()}, {}

    return fit(p, lambda: _model_from_arch(_arch(p)), lambda: TrainingSet(images, masks, p),
               batch_loss, title=f"U-Net {p.encoder_name}", log=log or logging.getLogger(__name__),
               validate=bind_validation(validate, val, meta, p), val=val,
               val_format="val dice {val_dice:.3f} F1@0.5 {val_f1_50:.3f} AP {val_ap:.3f}",
               part_names={"loss_foreground": "fg", "loss_boundary": "boundary",
                           "loss_centre": "centre"},
               on_epoch_end=on_epoch_end, initial_weights=initial_weights,
               channels_last=p.channels_last)


# --------------------------------------------------------------------------- checkpoints

def checkpoint_meta(params=None, data_hash: str | None = None, history: list | None = None,
                    **extra) -> dict:
    """Everything inference needs to know about a model, besides its weights.

    Keys: ``format``, ``format_version``, ``arch`` (``name``, ``encoder_name``,
    ``encoder_depth``, ``decoder_channels``, ``decoder_attention_type``, ``in_channels``,
    ``classes``), ``heads`` (output order), ``targets`` (target settings) and the keys of
    :func:`plateseg.engines.base.base_meta` (channels, normalisation, pixel size, data hash,
    code version, params, history, versions: torch, smp), plus ``extra`` keys (plain Python
    values, e.g. ``fold=2``).

    Examples
    --------
    >>> m = checkpoint_meta({"encoder_name": "resnet18"}, data_hash="abc")
    >>> m["heads"], m["channels"], m["normalization"]["p_high"]
    (['foreground', 'boundary', 'centre'], [0], 99.8)
    """
    import segmentation_models_pytorch as smp

    p = UNetParams.coerce(params) if not isinstance(params, UNetParams) else params
    engine = {"heads": list(HEADS),
              "targets": {"boundary_width": p.boundary_width, "heatmap_sigma": p.heatmap_sigma,
                          "heatmap_sigma_relative": p.heatmap_sigma_relative}}
    return base_meta(CHECKPOINT_FORMAT, CHECKPOINT_VERSION, _arch(p), p, (__name__,),
                     {"segmentation_models_pytorch": str(smp.__version__)}, data_hash, history,
                     engine, **extra)


save_checkpoint, load_checkpoint = checkpoint_io(
    CHECKPOINT_FORMAT, CHECKPOINT_VERSION, ("arch", "heads", "channels", "normalization"),
    _model_from_arch)


# --------------------------------------------------------------------------- inference

def predict_maps(model: torch.nn.Module, meta: dict, image, tile_size=256, halo: int = 32,
                 batch_size: int = 4, device=None, *, out=None, start: int = 0,
                 on_tile_written: Callable[[Tile], None] | None = None, channels=None,
                 norm_range=None, stats_max_pixels: int = 1 << 24, trim: int | None = None,
                 zoom: float = 1.0):
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
        ``(3, h, w)`` float32 target (e.g. a zarr array); see :func:`plateseg.tiling.blend.predict_tiled`.
    start, on_tile_written
        Resume and progress hooks, see :func:`plateseg.tiling.blend.predict_tiled`.
    channels : sequence of int, optional
        Image channels to feed the model; default ``meta["channels"]``.
    norm_range : (lo, hi), optional
        Normalisation range per channel (shape ``(c, 1, 1)``); default the field's
        ``p_low``/``p_high`` percentiles, computed on a strided subsample of at most
        ``stats_max_pixels`` pixels per channel.
    trim : int, optional
        Outer halo pixels left out of the blend (:func:`plateseg.tiling.blend.blend_window`);
        default ``halo // 2``: the taper covers the inner half of the halo. (A CNN's output
        is least reliable near its window edge; on a small test U-Net, trimming half the halo
        halved the tiled-vs-untiled difference compared with blending over the whole halo.)
    zoom : float
        The model sees the field zoomed by ``zoom`` (its training scale, :func:`plateseg.engines.scale.scale_factor`):
        ``tile_size`` and ``halo`` are then the model's pixels; the field is read in windows of
        :func:`plateseg.engines.scale.field_tiling`, each zoomed, and the maps resized back
        (:func:`plateseg.engines.scale.zoomed_maps`): the maps are in the field's pixels and no zoomed
        copy of the field is made.

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

    Examples
    --------
    >>> p = UNetParams(encoder_depth=3, decoder_channels=(16, 8, 8))
    >>> model = _model_from_arch(_arch(p)).eval()
    >>> predict_maps(model, checkpoint_meta(p), np.ones((40, 50)), 32, 8).shape
    (3, 40, 50)
    """
    if device is None:
        device = next(model.parameters()).device
    device = _device(device)
    model = model.to(device).eval()
    cuda = device.type == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    amp_dtype = _amp_dtype(device, True)
    read_fn, (h, w) = field_reader(meta, image, channels, norm_range, stats_max_pixels)
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

    if zoom != 1.0:
        from plateseg.engines.scale import field_tiling, zoomed_maps

        predict_fn = zoomed_maps(predict_fn, zoom)
        tile_size, halo = field_tiling(tile_size, halo, zoom)
    if tile_size is None:
        tile_size = (h, w)
    if trim is None:
        trim = int(halo) // 2
    return predict_tiled(predict_fn, read_fn, (h, w), tile_size, halo, batch_size, out,
                         start=start, on_tile_written=on_tile_written, trim=trim)
