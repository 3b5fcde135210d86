"""Code versions for Snakemake rerun triggers.

Snakemake's code trigger only sees a rule's ``script:`` file, not the library it imports. Each rule passes
:func:`script_code_hash` of its script as a ``params:`` value: a hash of the sources of every ``plateseg``
module the script imports, followed transitively through the library's own imports (:func:`module_closure`),
so a change to library code reruns exactly the steps whose code can reach it, with no hand-kept module lists.

Sources are read and parsed (:mod:`ast`), never imported: building the hashes of every rule when the workflow
loads imports neither torch nor the library's heavy dependencies.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import logging
import re
from pathlib import Path

__all__ = ["code_hash", "imported_modules", "module_closure", "module_file", "script_code_hash"]

log = logging.getLogger(__name__)

PACKAGE = "plateseg"
# the start of an import statement at the start of a line, and its rest: a parenthesised name list or the line
# (with backslash continuations)
_IMPORT = re.compile(r"^[ \t]*((?:from[ \t]+[\w.]+[ \t]+)?import\b(?:[ \t]*\([^)]*\)|(?:\\\n|[^\n])*))", re.M)


def _default_src() -> Path:
    """The folder holding the ``plateseg`` package that ``import plateseg`` finds."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"no package {PACKAGE!r}")
    return Path(list(spec.submodule_search_locations)[0]).parent


def module_file(name: str, src=None) -> Path | None:
    """The source file of module ``name`` under the folder ``src`` (``src/a/b.py`` or ``src/a/b/__init__.py``),
    or None when there is none (e.g. ``name`` is a function or class imported with ``from a import name``)."""
    root = Path(src) if src is not None else _default_src()
    base = root.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _package_of(name: str, path: Path) -> str:
    """The package a relative import in module ``name`` (file ``path``) is relative to."""
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def imported_modules(source: str, name: str = "", path: Path | None = None) -> set[str]:
    """Absolute names that the code ``source`` imports anywhere (top level, functions, classes): ``import a.b``
    gives ``a.b``; ``from a.b import c`` gives ``a.b`` and ``a.b.c`` (``c`` may be a submodule); relative
    imports are resolved against module ``name`` (file ``path``).

    Examples
    --------
    >>> sorted(imported_modules("import os\\ndef f():\\n    from plateseg.io import files"))
    ['os', 'plateseg.io', 'plateseg.io.files']
    >>> sorted(imported_modules("from .b import c", name="pkg.a"))
    ['pkg.b', 'pkg.b.c']
    """
    found: set[str] = set()
    for node in ast.walk(_import_tree(source)):
        if isinstance(node, ast.Call) and node.args and _is_import_call(node.func):
            # importlib.import_module("a.b") / __import__("a.b"); an f-string f"a.b.{x}" stands for every
            # module of package a.b (a trailing "*")
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.add(arg.value)
            elif isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
                prefix = str(arg.values[0].value)
                if "." in prefix:
                    found.add(prefix.rpartition(".")[0] + ".*")
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = _package_of(name, path) if path is not None else name.rpartition(".")[0]
                parts = package.split(".") if package else []
                if node.level > 1:
                    parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base:
                found.add(base)
            found.update(f"{base}.{alias.name}" if base else alias.name for alias in node.names if alias.name != "*")
    return found


def _import_tree(source: str) -> ast.Module:
    """The syntax tree of ``source``'s import statements alone (walking a whole module's tree was most of the
    time of hashing every rule's code at each load of the workflow); the whole module's tree where it imports
    by call (``import_module``, ``__import__``) or the statements do not parse on their own. A line inside a
    string that reads as an import (a docstring's example without ``>>>``) counts too: at worst a rule hashes
    more code than it runs, never less."""
    if "import_module" not in source and "__import__" not in source:
        try:
            return ast.parse("\n".join(m.group(1) for m in _IMPORT.finditer(source)))
        except SyntaxError:  # e.g. a line of a docstring that starts with "import"
            pass
    return ast.parse(source)


def _is_import_call(func) -> bool:
    if isinstance(func, ast.Attribute):
        return func.attr == "import_module"
    return isinstance(func, ast.Name) and func.id in ("import_module", "__import__")


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def module_closure(modules, src=None, package: str = PACKAGE) -> dict[str, Path]:
    """Every module of ``package`` that ``modules`` reach through imports, with its source file.

    The modules themselves, their parent packages (their ``__init__.py`` files run on import) and, transitively,
    every module of ``package`` that any of them imports (also inside functions); names that are no module
    file under ``src`` (functions or classes imported by ``from a import name``, modules of other packages) are
    skipped. Nothing is imported.

    Parameters
    ----------
    modules : iterable of str
        Absolute module names, e.g. ``["plateseg.segment.watershed"]``.
    src : path-like, optional
        Folder holding ``package`` (default: where ``import plateseg`` finds it).
    package : str
        Top-level package whose modules are followed.

    Returns
    -------
    dict
        Module name -> source file, sorted by name.

    Examples
    --------
    >>> sorted(module_closure(["plateseg.io.files"]))
    ['plateseg', 'plateseg.io', 'plateseg.io.files']
    """
    root = Path(src) if src is not None else _default_src()
    found: dict[str, Path] = {}
    todo = [m for m in modules if m == package or m.startswith(package + ".")]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        if name.endswith(".*"):  # every module of a package (a dynamic import)
            folder = root.joinpath(*name[:-2].split("."))
            if folder.is_dir():
                todo.append(name[:-2])
                todo.extend(f"{name[:-2]}.{f.stem}" for f in sorted(folder.glob("*.py")) if f.stem != "__init__")
            continue
        path = module_file(name, root)
        if path is None:
            continue
        found[name] = path
        todo.extend(_with_parents(name))
        stat = path.stat()
        deps = _file_imports(str(path), name, stat.st_mtime_ns, stat.st_size)
        todo.extend(d for d in deps if d == package or d.startswith(package + "."))
    return dict(sorted(found.items()))


@functools.lru_cache(maxsize=1024)
def _file_imports(path: str, name: str, mtime_ns: int, size: int) -> frozenset:
    """:func:`imported_modules` of a source file, parsed once per version of the file (every rule's trigger
    walks the same modules)."""
    return frozenset(imported_modules(Path(path).read_text(encoding="utf-8"), name, Path(path)))


def _digest(files: dict[str, Path], length: int) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode())
        digest.update(b"\0")
        digest.update(files[name].read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:length]


def code_hash(*modules: str, src=None, length: int = 12) -> str:
    """Short SHA-256 over the sources of the ``plateseg`` modules that ``modules`` reach (:func:`module_closure`).

    Examples
    --------
    >>> h = code_hash("plateseg.config.provenance")
    >>> len(h), h == code_hash("plateseg.config.provenance")
    (12, True)
    """
    root = Path(src) if src is not None else _default_src()
    missing = [m for m in modules if module_file(m, root) is None]
    if missing:
        raise ModuleNotFoundError(f"code_hash: no module {missing[0]!r} in {root}")
    return _digest(module_closure(modules, root), length)


def script_code_hash(script, src=None, length: int = 12) -> str:
    """Short SHA-256 over the ``plateseg`` sources a rule's script runs: the closure (:func:`module_closure`)
    of every ``plateseg`` module the script imports. The script itself is left out (Snakemake's own code
    trigger watches it).

    Parameters
    ----------
    script : path-like
        The rule's script, e.g. ``workflow/scripts/watershed.py``.
    src : path-like, optional
        Folder holding the ``plateseg`` package (default: where ``import plateseg`` finds it).
    length : int
        Hex digits kept.
    """
    script = Path(script)
    root = Path(src) if src is not None else _default_src()
    imports = imported_modules(script.read_text(encoding="utf-8"), "__main__", script)
    wanted = sorted(m for m in imports if m == PACKAGE or m.startswith(PACKAGE + "."))
    closure = module_closure(wanted, root)
    if wanted and not closure:
        raise ModuleNotFoundError(f"script_code_hash: {script} imports {wanted[0]!r}, which is not under {root}")
    return _digest(closure, length)
