"""Torch plumbing shared by the engines: seeding, devices, mixed precision, the learning-rate
schedule, augmentation crops and single-file checkpoints."""
from __future__ import annotations

import math
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "seed_everything",
    "resolve_device",
    "runtime_device",
    "amp_dtype",
    "lr_factor",
    "affine_crop",
    "code_version",
    "save_model_file",
    "load_model_file",
]


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str | torch.device | None) -> torch.device:
    """``None`` or ``"auto"``: CUDA when present, else CPU; otherwise the named device.

    Examples
    --------
    >>> resolve_device("cpu").type
    'cpu'
    """
    if name is None or str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def runtime_device() -> str:
    """The device the rule scripts run models on: ``$PLATESEG_DEVICE``, default ``"auto"``.

    The device is a runtime setting, not a science parameter, so it is not in the config:
    ``PLATESEG_DEVICE=auto|cpu|cuda|cuda:N`` in the jobs' environment (auto: CUDA when present).
    """
    return os.environ.get("PLATESEG_DEVICE", "auto")


def amp_dtype(device: torch.device, amp: bool):
    """The autocast dtype for ``device`` (bf16 where supported, else fp16), or None on CPU / amp off."""
    if device.type != "cuda" or not amp:
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``min_ratio`` at ``total``.

    Examples
    --------
    >>> [round(lr_factor(s, 10, 2, 0.1), 2) for s in (0, 1, 2, 10)]
    [0.5, 1.0, 1.0, 0.1]
    """
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(total - warmup, 1)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))


def affine_crop(arr: np.ndarray, scale: float, origin, size: int, order: int) -> np.ndarray:
    """Resample ``arr`` (h, w): output pixel ``u`` reads source ``origin + (u + .5) / s - .5``."""
    from scipy import ndimage as ndi

    inv = 1.0 / scale
    offset = (origin[0] + 0.5 * inv - 0.5, origin[1] + 0.5 * inv - 0.5)
    return ndi.affine_transform(arr, (inv, inv), offset=offset, output_shape=(size, size),
                                order=order, mode="constant", cval=0, prefilter=False)


def code_version(modules) -> str:
    """``<plateseg version>+<hash of the modules' source>``, recorded in checkpoints."""
    from plateseg import __version__
    from plateseg.config.provenance import code_hash

    return f"{__version__}+{code_hash(*modules)}"


def save_model_file(path, model: torch.nn.Module, meta: dict, fmt: str, version: int, required=(),
                    half: bool = False) -> None:
    """Write weights and ``meta`` to one file, atomically (temporary name, fsync, :func:`os.replace`).

    Weights are stored on CPU and contiguous (floating-point tensors as float16 with ``half``: half the
    size; ``load_state_dict`` copies them back into float32 parameters); the file loads with
    ``torch.load(weights_only=True)``. ``required`` names meta keys that must be present.
    """
    missing = [k for k in required if k not in meta]
    if missing:
        raise ValueError(f"checkpoint meta lacks {missing}; build it with checkpoint_meta()")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    payload_dtype = "float16" if half else "float32"
    payload = dict(meta)
    payload.setdefault("format", fmt)
    payload.setdefault("format_version", version)
    payload["weights_dtype"] = payload_dtype
    payload["state_dict"] = state
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_model_file(path, fmt: str, version: int, build, device=None):
    """Load a file written by :func:`save_model_file`; ``build(meta["arch"])`` makes the model.

    Returns the model (eval mode, on ``device``) and the metadata without the weights.

    Every way a file can be wrong (not a torch file, truncated, another format, weights that do not fit the
    recorded architecture) is a ValueError that names the file, raised before the model is used.
    """
    device = resolve_device(device)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a corrupt file (pickle, zip, EOF, IndexError)
        raise ValueError(f"{path}: not a readable {fmt} checkpoint (truncated or corrupt? "
                         f"{type(err).__name__}: {err})") from err
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise ValueError(f"{path} is not a {fmt} checkpoint")
    if int(payload.get("format_version", 0)) > version:
        raise ValueError(f"{path} has format version {payload['format_version']}, newer than this code ({version})")
    missing = [k for k in ("state_dict", "arch") if k not in payload]
    if missing:
        raise ValueError(f"{path}: {fmt} checkpoint without {missing}")
    state = payload.pop("state_dict")
    try:
        model = build(payload["arch"])
        model.load_state_dict(state, strict=True)
    except (KeyError, RuntimeError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: the weights do not fit the recorded architecture ({err})") from err
    model.to(device).eval()
    return model, payload
