"""What every engine shares: settings, the augmented crop dataset, the training loop,
checkpoints and the prediction set-up.

An engine (:mod:`plateseg.engines.unet`, :mod:`plateseg.engines.maskrcnn`) keeps only what
differs: its network, its targets, its loss and how it decodes a prediction. It subclasses
:class:`EngineParams` (the shared settings) and :class:`CropDataset` (the shared crops, with a
hook for the engine's targets), trains with :func:`fit` and reads and writes its checkpoints
through :func:`checkpoint_io`. Low-level torch plumbing (devices, mixed precision, the
learning-rate schedule, the affine crop, model files) lives in :mod:`plateseg.engines.runtime`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from plateseg.engines.normalize import apply_range, percentile_range
from plateseg.engines.runtime import (
    affine_crop,
    amp_dtype as _amp_dtype,
    code_version,
    load_model_file,
    lr_factor,
    resolve_device,
    save_model_file,
    seed_everything,
)

__all__ = [
    "EngineParams",
    "CropDataset",
    "deterministic",
    "fit",
    "base_meta",
    "checkpoint_io",
    "params_from_meta",
    "field_reader",
    "bind_validation",
    "finetune_params",
    "AUGMENTATION_KEYS",
    "freeze_batchnorm",
]

log = logging.getLogger(__name__)


@dataclass
class EngineParams:
    """Settings every engine has (field names are config keys and are saved in checkpoints).

    Input: ``channels`` (indices of the image channels fed to the model), ``p_low``, ``p_high``
    (percentiles of the per-image, per-channel normalisation), ``pixel_size`` the images were
    acquired at (recorded only).

    Optimisation: ``epochs``, ``samples_per_epoch`` (None: the number of images, at least one
    batch), ``batch_size``, ``crop_size``, ``lr``, ``weight_decay`` (AdamW), ``warmup_steps``
    then cosine decay to ``lr * min_lr_ratio``, ``grad_clip`` (max gradient norm or None).

    Augmentation: ``flips``, ``rot90``, ``scale_range`` (log-uniform zoom), ``intensity_jitter``
    (multiplicative and additive, on the normalised image), and, for models that must hold up on
    microscopes they never saw (all off by default): ``gamma_range`` (log-uniform gamma of the
    normalised intensities), ``background`` (the largest amplitude of a smooth additive background,
    autofluorescence-like), ``blur_sigma`` (the largest Gaussian blur, half of the crops) and
    ``noise_std`` (the largest standard deviation of additive Gaussian noise).

    Fine-tuning: ``freeze_bn`` keeps every BatchNorm layer in eval mode while training
    (:func:`freeze_batchnorm`): it normalises with the running statistics the model starts with and
    keeps them, instead of re-estimating them from a few images' crops; the weights still train.

    Runtime: ``seed``, ``device`` ("auto", "cpu", "cuda", "cuda:1"), ``amp`` (CUDA only),
    ``num_workers`` (data loader processes).

    Validation (each ``val_every`` epochs and after the last): tiled prediction with
    ``val_tile_size`` / ``val_halo``.

    An engine subclasses this dataclass, adds its own fields and may change defaults; its
    ``_what`` names it in error messages.

    Examples
    --------
    >>> EngineParams.coerce({"channels": [1, 0]}).channels
    (1, 0)
    """

    channels: tuple = (0,)
    p_low: float = 1.0
    p_high: float = 99.8
    pixel_size: float | None = None
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
    gamma_range: tuple = (1.0, 1.0)
    background: float = 0.0
    blur_sigma: float = 0.0
    noise_std: float = 0.0
    freeze_bn: bool = False
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    num_workers: int = 0
    val_every: int = 1
    val_tile_size: int = 256
    val_halo: int = 32

    _what = "engine"

    @classmethod
    def coerce(cls, params=None):
        """Settings from None (defaults), an instance (copied) or a dict (unknown keys are an error).

        See :func:`plateseg.config.params.coerce_params`.
        """
        from plateseg.config.params import coerce_params

        return coerce_params(cls, params, cls._what)

    def validate(self) -> None:
        """Raise ValueError on inconsistent settings."""
        if not self.channels:
            raise ValueError("channels must name at least one image channel")


def params_from_meta(cls, meta: dict):
    """The settings saved in a checkpoint's ``meta["params"]``, as ``cls``.

    Keys that are no longer fields (settings of older versions, e.g. the U-Net's ``val_mode``)
    are ignored, so old checkpoints keep loading.

    Examples
    --------
    >>> params_from_meta(EngineParams, {"params": {"epochs": 3, "val_mode": "boundary"}}).epochs
    3
    """
    names = {f.name for f in dataclasses.fields(cls)}
    return cls.coerce({k: v for k, v in dict(meta.get("params") or {}).items() if k in names})


# How a model saw its training inputs: its crops and augmentation. Fine-tuning keeps the checkpoint's: the zoom
# range of the scale augmentation is also the range of nucleus sizes inference takes the model to cover
# (plateseg.engines.scale.model_scale), so a fine-tuned checkpoint recording other values would be zoomed differently
AUGMENTATION_KEYS = ("crop_size", "flips", "rot90", "scale_range", "intensity_jitter", "gamma_range", "background",
                     "blur_sigma", "noise_std")


def finetune_params(settings: dict, meta: dict, cls) -> dict:
    """Settings to fine-tune a checkpoint: the model it is and how it saw its inputs from its ``meta["params"]``
    (every field an engine adds to :class:`EngineParams`: architecture, targets, losses; the normalisation
    ``p_low`` / ``p_high``; the crops and augmentation, :data:`AUGMENTATION_KEYS`); how to train (optimisation,
    runtime, channels, ``freeze_bn``) and validate (the engine's ``val_*`` fields, ``channels_last``) from
    ``settings``. The fine-tune training defaults of the workflow are
    :data:`plateseg.config.params.FINETUNE_DEFAULTS`.

    Examples
    --------
    >>> P = dataclasses.make_dataclass("P", [("width", int, 8), ("val_mode", str, "a")], bases=(EngineParams,))
    >>> meta = {"params": {"width": 32, "p_high": 99.0, "epochs": 50, "scale_range": [0.6, 1.6], "val_mode": "b"}}
    >>> out = finetune_params({"width": 8, "epochs": 3, "p_high": 99.8, "scale_range": [0.8, 1.25], "val_mode": "c"},
    ...                       meta, P)
    >>> out["width"], out["p_high"], out["scale_range"], out["epochs"], out["val_mode"]
    (32, 99.0, [0.6, 1.6], 3, 'c')
    >>> finetune_params({"freeze_bn": True}, meta, P)["freeze_bn"]
    True
    """
    names = {f.name for f in dataclasses.fields(cls)}
    training = ({f.name for f in dataclasses.fields(EngineParams)} - {"p_low", "p_high", "pixel_size"}
                - set(AUGMENTATION_KEYS)) | {n for n in names if n.startswith("val_") or n == "channels_last"}
    saved = dataclasses.asdict(params_from_meta(cls, meta))
    out = {k: _plain(v) for k, v in saved.items() if k not in training}
    out.update({k: v for k, v in settings.items() if k in training})
    return out


# --------------------------------------------------------------------------- data

class CropDataset(torch.utils.data.Dataset):
    """Augmented random crops of annotated images, reproducible per ``(seed, epoch, index)``.

    Parameters
    ----------
    images : sequence of array_like
        ``(c, h, w)`` (or ``(h, w)``) images; ``params.channels`` are used, normalised per image
        and channel by the ``p_low`` / ``p_high`` percentiles.
    masks : sequence of array_like
        ``(h, w)`` instance labels.
    params : EngineParams or dict
        Coerced to the class attribute ``params_class``.

    Notes
    -----
    Item ``i`` of epoch ``e`` is drawn from image ``perm_e[i % n]`` (a seeded permutation per
    epoch) with ``numpy.random.default_rng([seed, e, i])``: zoom ``s`` log-uniform in
    ``scale_range``, a random crop (images smaller than the crop are centred and padded with
    0 = the normalised low percentile, labels 0), the engine's target planes
    (:meth:`target_planes`, on the zoomed labels with ``margin`` extra pixels on each side),
    intensity jitter, the appearance changes of :func:`appearance`, then a 90-degree rotation and a flip of image and targets together.
    Subclasses define :meth:`target_planes` and :meth:`__getitem__`'s output through :meth:`item`.
    """

    params_class = EngineParams
    margin = 0

    def __init__(self, images, masks, params=None):
        self.p = self.params_class.coerce(params)
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
        self.setup()
        self.epoch = 0
        self._perm = None
        self.set_epoch(0)

    def setup(self) -> None:
        """Hook: per-image preparation once images and masks are loaded (default: none)."""

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
        return self.item(*self.crop(int(self._perm[i]), rng))

    def item(self, x: np.ndarray, planes: np.ndarray):
        """Hook: the dataset item from a crop and its target planes (default: two tensors)."""
        return torch.from_numpy(x), torch.from_numpy(planes)

    def target_planes(self, k: int, labels: np.ndarray, scale: float, origin) -> np.ndarray:
        """Hook: target planes ``(n, S, S)`` of image ``k`` from its zoomed ``labels``.

        ``labels`` is ``(S + 2 m, S + 2 m)`` with ``m = margin``; ``scale`` and ``origin`` map a
        source pixel ``q`` to crop pixel ``(q - origin + 0.5) * scale - 0.5 - m``. Default: the
        labels themselves as one float plane.
        """
        m, S = self.margin, int(self.p.crop_size)
        return labels[None, m:m + S, m:m + S].astype(np.float32)

    def crop(self, k: int, rng: np.random.Generator):
        """One augmented crop of image ``k``: ``(x (c, S, S), planes (n, S, S))`` float32 arrays."""
        p = self.p
        img, lab = self.images[k], self.masks[k]
        h, w = lab.shape
        S, margin = int(p.crop_size), int(self.margin)
        lo_s, hi_s = p.scale_range
        s = float(math.exp(rng.uniform(math.log(lo_s), math.log(hi_s)))) if hi_s > lo_s else float(lo_s)
        core = S / s  # source extent of the crop
        origin = []
        for n in (h, w):
            start = rng.uniform(0.0, n - core) if n > core else (n - core) / 2.0
            origin.append(start - margin / s)
        size = S + 2 * margin
        inner = (slice(None), slice(margin, margin + S), slice(margin, margin + S))
        x = np.stack([affine_crop(c, s, origin, size, 1) for c in img])[inner]
        planes = self.target_planes(k, affine_crop(lab, s, origin, size, 0), s, origin)
        if p.intensity_jitter > 0:
            j = p.intensity_jitter
            gain = 1.0 + rng.uniform(-j, j, size=(x.shape[0], 1, 1))
            bias = rng.uniform(-j, j, size=(x.shape[0], 1, 1))
            x = x * gain + bias
        x = appearance(x, p, rng)
        stack = np.concatenate([x, planes]).astype(np.float32)
        if p.rot90:
            stack = np.rot90(stack, int(rng.integers(4)), axes=(1, 2))
        if p.flips and rng.random() < 0.5:
            stack = stack[:, :, ::-1]
        stack = np.ascontiguousarray(stack)
        c = x.shape[0]
        return stack[:c], stack[c:]


def appearance(x: np.ndarray, p, rng: np.random.Generator) -> np.ndarray:
    """Gamma, smooth background, blur and noise of a normalised crop ``x`` (c, S, S), each only when
    its setting of ``p`` (:class:`EngineParams`) is on (a setting that is off draws no random numbers,
    so crops of models trained without these are unchanged).

    Examples
    --------
    >>> x = np.linspace(0, 1, 64, dtype=np.float32).reshape(1, 8, 8)
    >>> p = EngineParams.coerce({"gamma_range": [0.5, 2.0], "background": 0.3, "blur_sigma": 1.0, "noise_std": 0.05})
    >>> y = appearance(x, p, np.random.default_rng(0))
    >>> y.shape, bool(np.isfinite(y).all()), bool(np.allclose(y, x))
    ((1, 8, 8), True, False)
    >>> bool(np.array_equal(appearance(x, EngineParams(), np.random.default_rng(0)), x))
    True
    """
    from scipy import ndimage as ndi

    lo_g, hi_g = p.gamma_range
    if hi_g > lo_g or lo_g != 1.0:
        g = float(math.exp(rng.uniform(math.log(lo_g), math.log(hi_g)))) if hi_g > lo_g else float(lo_g)
        x = np.sign(x) * np.abs(x) ** g
    if p.background > 0:
        # autofluorescence-like: a 4x4 random grid zoomed (cubic) to the crop, times a random amplitude
        amp = rng.uniform(0.0, p.background)
        grid = rng.random((4, 4))
        field = ndi.zoom(grid, (x.shape[1] / 4.0, x.shape[2] / 4.0), order=3, mode="nearest")
        x = x + amp * np.clip(field, 0.0, None)[None, : x.shape[1], : x.shape[2]]
    if p.blur_sigma > 0 and rng.random() < 0.5:
        sigma = rng.uniform(0.0, p.blur_sigma)
        x = np.stack([ndi.gaussian_filter(c, sigma) for c in x])
    if p.noise_std > 0:
        x = x + rng.normal(0.0, rng.uniform(0.0, p.noise_std), size=x.shape)
    return x.astype(np.float32, copy=False)


# --------------------------------------------------------------------------- training

@contextlib.contextmanager
def deterministic(seed: int, device: torch.device):
    """Seed Python, numpy and torch and, on CPU, use deterministic algorithms inside the block.

    The previous ``torch.use_deterministic_algorithms`` state is restored on exit.

    Examples
    --------
    >>> with deterministic(0, torch.device("cpu")):
    ...     torch.are_deterministic_algorithms_enabled()
    True
    """
    seed_everything(seed)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was_deterministic, warn_only=was_warn_only)


def bind_validation(validate, val, meta: dict, p):
    """The per-epoch validation hook of :func:`fit` from an engine's ``validate(model, meta, val, params,
    device)``: None without held-out data; an error when there is held-out data but nothing to score it.

    Examples
    --------
    >>> bind_validation(None, None, {}, None) is None
    True
    >>> hook = bind_validation(lambda m, meta, v, p, d: {"val_n": len(v)}, [1, 2], {}, None)
    >>> hook("model", [1, 2], "cpu")
    {'val_n': 2}
    """
    if val is None:
        return None
    if validate is None:
        raise ValueError("held-out images (val) need a validate function, e.g. plateseg.pipeline.validation")
    return lambda model, v, device: validate(model, meta, v, p, device)


def fit(p: EngineParams, build_model: Callable[[], torch.nn.Module],
        make_data: Callable[[], CropDataset], batch_loss: Callable, *, title: str,
        log: logging.Logger, collate: Callable | None = None, validate: Callable | None = None,
        val=None, val_format: str = "", part_names: dict | None = None,
        on_epoch_end: Callable[[dict], bool | None] | None = None,
        initial_weights: dict | None = None, channels_last: bool = False):
    """Train a model from scratch (or from ``initial_weights``): the loop every engine shares.

    Parameters
    ----------
    p : EngineParams
        Validated settings.
    build_model, make_data : callable
        Build the model (random weights, drawn after seeding) and the training set.
    batch_loss : callable
        ``batch_loss(model, batch, device, amp_dtype)`` returns ``(loss, n, means, totals)``:
        the loss tensor to minimise, the number of crops, a dict of per-crop mean values (history
        keys, averaged over the epoch weighted by ``n``) and a dict of counts (history keys,
        summed over the epoch and divided by its number of crops).
    title : str
        Names the model in the log.
    log : logging.Logger
        Receives one INFO line per epoch.
    collate : callable, optional
        The data loader's ``collate_fn`` (default: torch's).
    validate : callable, optional
        ``validate(model, val, device)`` returns a dict of metrics, added to the epoch's record
        every ``val_every`` epochs and after the last, when ``val`` is given.
    val : object, optional
        Held-out data for ``validate``.
    val_format : str
        ``str.format`` template of the validation part of the log line.
    part_names : dict, optional
        History keys of loss parts and their short names in the log line.
    on_epoch_end : callable, optional
        Called with each epoch's record; if it returns True, training stops after this epoch.
    initial_weights : dict, optional
        A state dict to start from instead of random weights.
    channels_last : bool
        On CUDA, put the model in channels_last layout.

    Returns
    -------
    model : torch.nn.Module
        In eval mode, on the training device.
    history : list of dict
        One record per epoch: ``epoch``, ``loss``, the ``means``, ``lr``, ``steps``, the
        ``totals`` per crop, the validation metrics when validated, ``seconds``.

    Notes
    -----
    AdamW on the parameters that require gradients, linear warm-up then cosine decay
    (:func:`plateseg.engines.runtime.lr_factor`) stepped per batch, a gradient scaler with fp16
    autocast, gradient-norm clipping, BatchNorm layers kept in eval mode with ``p.freeze_bn``
    (:func:`freeze_batchnorm`); all inside :func:`deterministic`, so two runs with the same
    inputs and settings give the same weights on CPU.

    Examples
    --------
    >>> data = lambda: CropDataset([np.ones((8, 8))], [np.ones((8, 8), int)], {"crop_size": 8})
    >>> def loss(model, batch, device, amp):
    ...     x, _ = batch
    ...     value = model(x).pow(2).mean()
    ...     return value, len(x), {}, {}
    >>> p = EngineParams.coerce({"epochs": 2, "batch_size": 2, "crop_size": 8, "device": "cpu"})
    >>> _, h = fit(p, lambda: torch.nn.Conv2d(1, 1, 1), data, loss, title="demo", log=log)
    >>> [r["epoch"] for r in h], h[1]["loss"] < h[0]["loss"]
    ([1, 2], True)
    """
    part_names = part_names or {}
    device = resolve_device(p.device)
    cuda = device.type == "cuda"
    with deterministic(p.seed, device):
        model = build_model()
        if initial_weights is not None:
            model.load_state_dict(initial_weights)
        model = model.to(device)
        if cuda and channels_last:
            model = model.to(memory_format=torch.channels_last)
        data = make_data()
        loader = torch.utils.data.DataLoader(
            data, batch_size=p.batch_size, shuffle=False, num_workers=p.num_workers,
            pin_memory=cuda, drop_last=False, collate_fn=collate,
            generator=torch.Generator().manual_seed(p.seed), persistent_workers=False)
        steps_per_epoch = len(loader)
        total = steps_per_epoch * p.epochs
        params = [q for q in model.parameters() if q.requires_grad]
        opt = torch.optim.AdamW(params, lr=p.lr, weight_decay=p.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: lr_factor(s, total, min(p.warmup_steps, total // 2), p.min_lr_ratio))
        amp_dtype = _amp_dtype(device, p.amp)
        scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
        history = []
        log.info("training %s on %d images (%s), %d epochs x %d steps of %d crops %dpx", title,
                 len(data.images), device, p.epochs, steps_per_epoch, p.batch_size, p.crop_size)
        for epoch in range(p.epochs):
            t0 = time.perf_counter()
            model.train()
            if p.freeze_bn:
                freeze_batchnorm(model)
            data.set_epoch(epoch)
            sums, counts, n_seen = {"loss": 0.0}, {}, 0
            for batch in loader:
                loss, n, means, totals = batch_loss(model, batch, device, amp_dtype)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"epoch {epoch + 1}: loss is {float(loss)} ({means}); "
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
                n_seen += n
                sums["loss"] += float(loss.detach()) * n
                for k, v in means.items():
                    sums[k] = sums.get(k, 0.0) + v * n
                for k, v in totals.items():
                    counts[k] = counts.get(k, 0) + v
            rec = {"epoch": epoch + 1, **{k: v / n_seen for k, v in sums.items()},
                   "lr": float(opt.param_groups[0]["lr"]), "steps": steps_per_epoch,
                   **{k: v / n_seen for k, v in counts.items()}}
            msg = ""
            if validate is not None and val is not None and (
                    (epoch + 1) % max(p.val_every, 1) == 0 or epoch + 1 == p.epochs):
                model.eval()
                rec.update(validate(model, val, device))
                msg = " | " + val_format.format(**rec)
            rec["seconds"] = time.perf_counter() - t0
            history.append(rec)
            parts = " ".join(f"{name} {rec[k]:.4f}" for k, name in part_names.items())
            log.info("epoch %d/%d loss %.4f (%s) lr %.2e %.1f s%s", epoch + 1, p.epochs,
                     rec["loss"], parts, rec["lr"], rec["seconds"], msg)
            if on_epoch_end is not None and on_epoch_end(rec) is True and epoch + 1 < p.epochs:
                log.info("stopped after epoch %d of %d by on_epoch_end", epoch + 1, p.epochs)
                break
    model.eval()
    return model, history


def freeze_batchnorm(model: torch.nn.Module) -> int:
    """Put every BatchNorm layer of ``model`` in eval mode (after ``model.train()``): the layers normalise
    with their running statistics and no longer update them; their affine weights still train.

    Returns the number of layers frozen.

    Examples
    --------
    >>> m = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2)).train()
    >>> freeze_batchnorm(m), m[1].training, m[0].training
    (1, False, True)
    """
    layers = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in layers:
        m.eval()
    return len(layers)


# --------------------------------------------------------------------------- checkpoints

def _plain(v):
    return [_plain(a) for a in v] if isinstance(v, tuple) else v


def base_meta(fmt: str, version: int, arch: dict, p: EngineParams, modules, versions: dict,
              data_hash: str | None = None, history: list | None = None, engine: dict | None = None,
              **extra) -> dict:
    """The checkpoint metadata every engine writes (its ``checkpoint_meta`` adds ``engine`` keys).

    Keys: ``format``, ``format_version``, ``arch``, the ``engine`` keys, ``channels``,
    ``normalization`` (``method: percentile``, ``p_low``, ``p_high``, per image and channel),
    ``pixel_size``, ``data_hash``, ``code_version`` (of ``modules``), ``params`` (all settings,
    tuples as lists), ``history``, ``versions``, plus ``extra`` keys (plain Python values).

    Examples
    --------
    >>> m = base_meta("demo", 1, {"name": "x"}, EngineParams(), ["plateseg.labels"], {}, fold=2)
    >>> m["normalization"]["p_high"], m["params"]["scale_range"], m["fold"]
    (99.8, [0.8, 1.25], 2)
    """
    meta = {"format": fmt, "format_version": version, "arch": arch, **(engine or {}),
            "channels": [int(c) for c in p.channels],
            "normalization": {"method": "percentile", "p_low": float(p.p_low),
                              "p_high": float(p.p_high), "per": "image and channel"},
            "pixel_size": None if p.pixel_size is None else float(p.pixel_size),
            "data_hash": data_hash,
            "code_version": code_version(modules),
            "params": {k: _plain(v) for k, v in dataclasses.asdict(p).items()},
            "history": list(history or []),
            "versions": {"torch": str(torch.__version__), **versions}}
    meta.update(extra)
    return meta


def checkpoint_io(fmt: str, version: int, required, build: Callable[[dict], torch.nn.Module]):
    """An engine's ``save_checkpoint(path, model, meta)`` and ``load_checkpoint(path, device=None)``.

    ``save_checkpoint`` writes the weights (on CPU, contiguous; float16 with ``half=True``, the shipped
    models' format, loaded back into float32 parameters) and ``meta`` to one file,
    atomically (a temporary name in the same folder, fsync, :func:`os.replace`), so a killed job
    never leaves a truncated checkpoint; the file loads with ``torch.load(weights_only=True)``.
    ``load_checkpoint`` rebuilds the model with ``build(meta["arch"])`` and returns it (in eval
    mode, on ``device``: "auto"/None = CUDA if available, else CPU) and the stored metadata.

    Examples
    --------
    >>> import tempfile, os
    >>> save, load = checkpoint_io("demo", 1, ("arch",), lambda arch: torch.nn.Linear(2, arch["out"]))
    >>> path = os.path.join(tempfile.mkdtemp(), "m.pt")
    >>> save(path, torch.nn.Linear(2, 3), {"arch": {"out": 3}})
    >>> model, meta = load(path, "cpu")
    >>> model.out_features, meta["format"]
    (3, 'demo')
    """
    def save_checkpoint(path, model: torch.nn.Module, meta: dict, half: bool = False) -> None:
        save_model_file(path, model, meta, fmt, version, required, half=half)

    def load_checkpoint(path, device=None):
        return load_model_file(path, fmt, version, build, device)

    save_checkpoint.__doc__ = f"Write a {fmt} checkpoint (see :func:`plateseg.engines.base.checkpoint_io`)."
    load_checkpoint.__doc__ = f"Load a {fmt} checkpoint: ``(model, meta)`` (see :func:`plateseg.engines.base.checkpoint_io`)."
    return save_checkpoint, load_checkpoint


# --------------------------------------------------------------------------- inference

def field_reader(meta: dict, image, channels=None, norm_range=None,
                 stats_max_pixels: int = 1 << 24):
    """Read normalised windows of a field the way a model was trained: ``(read_fn, (h, w))``.

    Parameters
    ----------
    meta : dict
        The model's metadata: ``channels``, ``arch["in_channels"]``, ``normalization``.
    image : array_like
        ``(c, h, w)`` (or ``(h, w)``) field; numpy or any array supporting basic slicing
        (a zarr array: only the windows read and a strided sample are loaded).
    channels : sequence of int, optional
        Image channels to feed the model; default ``meta["channels"]``.
    norm_range : (lo, hi), optional
        Normalisation range per channel; default the field's ``p_low`` / ``p_high``
        percentiles on a strided subsample of at most ``stats_max_pixels`` pixels per channel.

    Returns
    -------
    read_fn : callable
        ``read_fn((ys, xs))`` gives the normalised ``(c, h, w)`` float window.
    shape : tuple of int
        ``(h, w)`` of the field.

    Examples
    --------
    >>> meta = {"channels": [0], "arch": {"in_channels": 1},
    ...         "normalization": {"p_low": 0.0, "p_high": 100.0}}
    >>> read, shape = field_reader(meta, np.arange(12.0).reshape(3, 4))
    >>> shape, [round(float(v), 2) for v in read((slice(0, 1), slice(0, 4)))[0, 0]]
    ((3, 4), [0.0, 0.09, 0.18, 0.27])
    """
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

    return read_fn, (h, w)
