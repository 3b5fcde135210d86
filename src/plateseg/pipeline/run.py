"""What every rule that runs a model starts with: the torch threads and the device of the job."""
from __future__ import annotations

__all__ = ["torch_device"]


def torch_device(threads: int | None = None) -> str:
    """Set torch's CPU threads to ``threads`` (if given) and return the job's device.

    The device is :func:`plateseg.engines.runtime.runtime_device` (``$PLATESEG_DEVICE``, default
    ``"auto"``). torch is imported here, not when this module is imported.

    Examples
    --------
    >>> torch_device(1) in ("auto", "cpu", "cuda") or torch_device().startswith("cuda")
    True
    """
    import torch

    from plateseg.engines.runtime import runtime_device

    if threads is not None:
        torch.set_num_threads(int(threads))
    return runtime_device()
