"""Code versions for Snakemake rerun triggers.

Snakemake's code trigger only sees a rule's ``script:`` file, not the library it imports. Rules
pass :func:`code_hash` of the modules they run as a ``params:`` value, so a change to that
library code reruns exactly the steps that use it.
"""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

__all__ = ["code_hash"]


def code_hash(*modules: str, length: int = 12) -> str:
    """Short SHA-256 over the source files of the named ``plateseg`` modules.

    Examples
    --------
    >>> h = code_hash("plateseg.provenance")
    >>> len(h), h == code_hash("plateseg.provenance")
    (12, True)
    """
    digest = hashlib.sha256()
    for name in sorted(set(modules)):
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ModuleNotFoundError(f"code_hash: no module {name!r}")
        digest.update(name.encode())
        digest.update(Path(spec.origin).read_bytes())
    return digest.hexdigest()[:length]
