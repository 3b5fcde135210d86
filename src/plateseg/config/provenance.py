"""Code versions for Snakemake rerun triggers.

Snakemake's code trigger only sees a rule's ``script:`` file, not the library it imports. Rules
pass :func:`code_hash` of the modules they run as a ``params:`` value, so a change to that
library code reruns exactly the steps that use it.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
from pathlib import Path

__all__ = ["code_hash", "declared_modules"]


def code_hash(*modules: str, length: int = 12) -> str:
    """Short SHA-256 over the source files of the named ``plateseg`` modules.

    Examples
    --------
    >>> h = code_hash("plateseg.config.provenance")
    >>> len(h), h == code_hash("plateseg.config.provenance")
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


def declared_modules(module: str, name: str = "CODE_MODULES") -> tuple[str, ...]:
    """The tuple of module names that ``module`` declares as ``name``, read without importing it.

    Engines list the modules their code spans (e.g. ``plateseg.engines.unet.CODE_MODULES``); reading the
    literal from the source keeps the workflow from importing torch just to build its rerun triggers.

    Examples
    --------
    >>> "plateseg.engines.unet" in declared_modules("plateseg.engines.unet")
    True
    """
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"declared_modules: no module {module!r}")
    tree = ast.parse(Path(spec.origin).read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    raise AttributeError(f"{module} declares no {name}")
