"""Model sets: the models that ship in ``models/<set>/`` of the repository, and the files a run uses.

A set is a folder with ``unet.pt``, ``maskrcnn.pt``, ``picker.json`` (any of them), a model card
``README.md`` and optionally ``settings.yaml``: the inference settings chosen with the set (watershed,
Mask R-CNN detection and pick thresholds). Config ``models.source``:

- ``pretrained`` (the default): inference with the set's files (``models.set``, a shipped set by name or a
  folder), each replaceable by an explicit file (``models.unet``, ``models.maskrcnn``, ``models.picker``);
- ``finetune``: both engines start from those files and train briefly on ``training.annotations``; each keeps
  its fine-tuned model only where cross-validation says it beats the start
  (:func:`plateseg.pipeline.validation.choose_finetuned`); the picker is retrained on out-of-fold candidates;
- ``train``: everything is trained from scratch by the workflow.

With ``pretrained`` and ``finetune`` the set's ``settings.yaml`` gives the defaults of those keys
(:func:`with_set_settings`); a key of the run's own config wins.
"""
from __future__ import annotations

from pathlib import Path

from plateseg.config.checks import ConfigError, load_yaml

__all__ = ["MODEL_FILES", "model_files", "model_set_dir", "shipped_sets", "with_set_settings"]

# the files of a set, by the models.* key that can replace each
MODEL_FILES = {"unet": "unet.pt", "maskrcnn": "maskrcnn.pt", "picker": "picker.json"}
DEFAULT_SET = "dsb2018-fluo"


def shipped_sets(root) -> list[str]:
    """Names of the sets in ``<root>/models`` (folders holding at least one model file).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp()); (root / "models" / "a").mkdir(parents=True)
    >>> _ = (root / "models" / "a" / "unet.pt").write_bytes(b"")
    >>> shipped_sets(root)
    ['a']
    """
    folder = Path(root) / "models"
    if not folder.is_dir():
        return []
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and any((d / f).is_file() for f in MODEL_FILES.values()))


def model_set_dir(name, root) -> Path:
    """The folder of set ``name``: a shipped set (``<root>/models/<name>``) or a folder path.

    Raises
    ------
    ConfigError
        Naming ``models.set`` and listing the shipped sets, when ``name`` is neither.

    Examples
    --------
    >>> model_set_dir("nope", "/nonexistent")
    Traceback (most recent call last):
    ...
    plateseg.config.checks.ConfigError: config key models.set: 'nope' is neither a shipped model set nor a folder; shipped sets: none
    """
    shipped = shipped_sets(root)
    if str(name) in shipped:
        return Path(root) / "models" / str(name)
    if Path(name).is_dir() and any((Path(name) / f).is_file() for f in MODEL_FILES.values()):
        return Path(name)
    raise ConfigError(f"config key models.set: {str(name)!r} is neither a shipped model set nor a folder; "
                      f"shipped sets: {', '.join(shipped) or 'none'}")


def model_files(config: dict, root) -> dict:
    """``{"unet": path, "maskrcnn": path, "picker": path}`` of a ``pretrained`` or ``finetune`` run: the explicit
    ``models.<key>`` file, else the set's file (None when the set has none).

    Examples
    --------
    >>> model_files({"models": {"source": "pretrained", "set": None, "unet": "u.pt", "maskrcnn": None,
    ...                         "picker": None}}, "/nonexistent")["unet"]
    'u.pt'
    """
    models = config.get("models", {})
    folder = model_set_dir(models["set"], root) if models.get("set") else None
    files = {}
    for key, name in MODEL_FILES.items():
        explicit = models.get(key)
        if explicit:
            files[key] = str(explicit)
        elif folder is not None and (folder / name).is_file():
            files[key] = str(folder / name)
        else:
            files[key] = None
    return files


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def with_set_settings(config: dict, root) -> dict:
    """The config (as loaded, before the schema's defaults) on top of the set's ``settings.yaml``, for
    ``models.source`` pretrained (the default) or finetune, and, for finetune, on top of the engines' fine-tune
    training settings (:data:`plateseg.config.params.FINETUNE_DEFAULTS`: not the ``unet.*`` / ``maskrcnn.*``
    schema defaults of training from scratch); otherwise the config unchanged.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp()); s = root / "models" / "x"; s.mkdir(parents=True)
    >>> _ = (s / "unet.pt").write_bytes(b"")
    >>> _ = (s / "settings.yaml").write_text("watershed: {fg_threshold: 0.6, min_area: 20}")
    >>> with_set_settings({"models": {"set": "x"}, "watershed": {"min_area": 30}}, root)["watershed"]
    {'fg_threshold': 0.6, 'min_area': 30}
    >>> with_set_settings({"models": {"source": "train", "set": "x"}}, root)
    {'models': {'source': 'train', 'set': 'x'}}
    >>> tuned = with_set_settings({"models": {"source": "finetune", "set": "x"}, "unet": {"epochs": 3}}, root)
    >>> tuned["unet"]["epochs"], tuned["unet"]["lr"], tuned["maskrcnn"]["lr"]
    (3, 0.001, 0.001)
    """
    import copy

    from plateseg.config.params import FINETUNE_DEFAULTS

    models = config.get("models") or {}
    source = models.get("source", "pretrained")
    if source == "train":
        return config
    if source == "finetune":
        config = _merge(copy.deepcopy(FINETUNE_DEFAULTS), config)
    name = models.get("set", DEFAULT_SET)
    if not name:
        return config
    settings = model_set_dir(name, root) / "settings.yaml"
    if not settings.is_file():
        return config
    return _merge(load_yaml(settings) or {}, config)
