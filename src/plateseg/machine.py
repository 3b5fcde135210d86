"""What machine a run measured itself on: CPU model and count, usable cores, GPU, load average.

Benchmark reports (``bench/``) write this instead of a fixed sentence about the machine. A module of its
own at the top of the package: it belongs to no pipeline step, imports nothing of plateseg and imports
torch only inside :func:`machine_info` (to ask for CUDA), so any package can use it.
"""
from __future__ import annotations

import logging
import os
import platform

__all__ = ["cpu_model", "machine_info", "machine_text"]

log = logging.getLogger(__name__)


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU model name of ``/proc/cpuinfo`` (``model name``), else :func:`platform.processor`.

    Examples
    --------
    >>> isinstance(cpu_model(), str)
    True
    >>> cpu_model("/nonexistent") == (platform.processor() or platform.machine())
    True
    """
    try:
        with open(cpuinfo) as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "cpu model"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(gpu: bool = True) -> dict:
    """A snapshot of the machine: CPU model and cores, usable cores, 1-minute load average, GPU.

    Parameters
    ----------
    gpu : bool
        Ask torch for CUDA (imports torch; without torch installed, ``cuda`` is False).

    Returns
    -------
    dict
        ``cpu_model``, ``cpu_count`` (:func:`os.cpu_count`), ``cpus_usable`` (cores this process may
        run on, :func:`os.sched_getaffinity`), ``load_1min`` (:func:`os.getloadavg`), ``cuda``
        (:func:`torch.cuda.is_available`), ``gpu_name`` (device 0, or None), ``system``.

    Examples
    --------
    >>> info = machine_info(gpu=False)
    >>> sorted(info)
    ['cpu_count', 'cpu_model', 'cpus_usable', 'cuda', 'gpu_name', 'load_1min', 'system']
    >>> info["cpus_usable"] <= info["cpu_count"]
    True
    """
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "cpus_usable": usable,
            "load_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan"),
            "cuda": False, "gpu_name": None, "system": f"{platform.system()} {platform.machine()}"}
    if gpu:
        try:
            import torch
        except ImportError:
            return info
        info["cuda"] = bool(torch.cuda.is_available())
        if info["cuda"]:
            info["gpu_name"] = torch.cuda.get_device_name(0)
    return info


def machine_text(start: dict, end: dict | None = None) -> str:
    """One sentence of a report: the machine of :func:`machine_info` snapshots at the start and end of a run.

    Examples
    --------
    >>> a = {"cpu_model": "Xeon", "cpu_count": 4, "cpus_usable": 2, "load_1min": 1.5, "cuda": False,
    ...      "gpu_name": None, "system": "Linux x86_64"}
    >>> machine_text(a, dict(a, load_1min=3.25))
    'Linux x86_64, Xeon, 4 cores (2 usable by the run), no CUDA GPU; 1-minute load average 1.50 at the start, 3.25 at the end'
    """
    gpu = f"CUDA GPU {start['gpu_name']}" if start.get("cuda") else "no CUDA GPU"
    load = f"1-minute load average {start['load_1min']:.2f} at the start"
    if end is not None:
        load += f", {end['load_1min']:.2f} at the end"
    return (f"{start['system']}, {start['cpu_model']}, {start['cpu_count']} cores ({start['cpus_usable']} usable "
            f"by the run), {gpu}; {load}")
