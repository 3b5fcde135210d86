# Shared set-up: the manifest (parsed when the Snakefile loads), wildcard constraints,
# input functions and resource functions used by the rules. Settings come from plateseg.config.params.
import copy
import os
import re
import sys
from pathlib import Path

# the workflow and its rule scripts import the plateseg library of this checkout (not another installed copy),
# also inside --use-conda environments
SRC = Path(workflow.basedir) / "src"
sys.path.insert(0, str(SRC))

from plateseg.config.checks import (
    ConfigError,
    check_config,
    engines_used,
    fill_defaults,
    load_yaml,
    prepend_pythonpath,
    schema_problems,
)
from plateseg.config.models import model_files, with_set_settings
from plateseg.config.demo import demo_files, demo_groundtruth_files, demo_manifest
from plateseg.config.params import (
    cell_settings,
    classical_settings,
    engine_settings,
    maskrcnn_detection,
    picker_settings,
    watershed_settings,
)
from plateseg.config.provenance import script_code_hash
from plateseg.io.manifest import build_manifest, check_complete, check_single_plane, select_plane, well_records
from plateseg.io.manifest import unlisted_file_channels

prepend_pythonpath(SRC)
# the folder of the plateseg package imported above (this checkout's src, or the installed package without one):
# the rerun triggers hash its sources
PLATESEG_SRC = Path(sys.modules["plateseg"].__file__).resolve().parents[1]
# idle OpenMP threads of the jobs sleep instead of spinning: on a machine shared with other processes, torch
# with spinning threads runs many times slower (set OMP_WAIT_POLICY in the environment to override)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# a model set's inference settings (models/<set>/settings.yaml) are the defaults under the run's config; then the
# schema fills in the rest
_config = copy.deepcopy(with_set_settings(config, workflow.basedir))
config.clear()
config.update(_config)
SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"
_schema = load_yaml(SCHEMA)
_problems = schema_problems(config, _schema)
if _problems:  # one line per problem, naming the key (snakemake's validate would print the whole schema)
    raise ConfigError(f"{len(_problems)} problem(s) in the config:\n" + "\n".join(_problems))
fill_defaults(config, _schema)  # as snakemake.utils.validate, without parsing the schema again
if config["models"]["source"] != "train":
    # the files of the set (or the explicit models.* files): from here on every rule sees concrete paths
    config["models"].update(model_files(config, workflow.basedir))
check_config(config)
DEMO = config["demo"]["enabled"]


def script_code(name):
    """Rerun trigger of a rule: hash of the plateseg sources that workflow/scripts/<name>.py reaches."""
    return script_code_hash(Path(workflow.basedir) / "workflow" / "scripts" / f"{name}.py", src=PLATESEG_SRC)


# the demo plate is a rule's output (demo_plate): its manifest is known from the config, without its files
if DEMO:
    MANIFEST, UNMATCHED = demo_manifest(config), []
else:
    MANIFEST, UNMATCHED = build_manifest(
        config["input"]["dir"],
        config["input"]["scheme"],
        pattern=config["input"]["pattern"],
        sample_sheet=config["input"]["sample_sheet"],
        plate=config["input"]["plate"],
    )
if UNMATCHED:
    logger.warning(
        f"plateseg: {len(UNMATCHED)} file(s) in {config['input']['dir']} match no {config['input']['scheme']} "
        f"name and are not processed, e.g. {UNMATCHED[:5]}"
    )
for problem in check_complete(MANIFEST):
    logger.warning(f"plateseg: {problem}")
# input.z_projection: a plane number selects files here; max / mean (Z_PROJECT) project the planes at ingest
MANIFEST = select_plane(MANIFEST, config["input"]["z_projection"], config["input"]["dir"])
Z_PROJECT = config["input"]["z_projection"] if config["input"]["z_projection"] in ("max", "mean") else None
_stacks = check_single_plane(MANIFEST, ignore=("plane",) if Z_PROJECT else ())
if _stacks:
    raise ValueError(
        f"plateseg segments one 2-D plane per field and channel, but {len(_stacks)} field/channel position(s) of "
        f"{config['input']['dir']} have several files (z-planes or time points; config key input.scheme / "
        f"input.pattern): {'; '.join(_stacks[:3])}{' ...' if len(_stacks) > 3 else ''}. For z-stacks set "
        "input.z_projection (max, mean or a plane number); time points need one run per time point (nothing is "
        "dropped silently)."
    )
_unlisted = unlisted_file_channels(MANIFEST, config["channels"]["names"])
if _unlisted:
    logger.warning(f"plateseg: {_unlisted}")
MANIFEST = MANIFEST[MANIFEST["channel"].isin(list(config["channels"]["names"]))]
if MANIFEST.empty:
    raise ValueError(
        f"config channels.names lists channel ids {list(config['channels']['names'])}, "
        f"but no file of {config['input']['dir']} has one of them"
    )

PLATES = sorted(MANIFEST["plate"].unique())
WELLS = {p: sorted(MANIFEST.loc[MANIFEST["plate"] == p, "well"].unique()) for p in PLATES}
ALL_WELLS = sorted({w for ws in WELLS.values() for w in ws})
# label sets a well can have (method -> label store name); the configured method's set is the final one
LABELSETS = {"classical": "classical", "unet": "unet_labels", "maskrcnn": "maskrcnn", "ensemble": "ensemble", "cells": "cells"}
# cells.channel set: every final nucleus seeds a cell (segment_cells writes cells.zarr and cytoplasm.zarr)
CELLS = config["cells"]["channel"] is not None
FOLDS = [str(k) for k in range(config["training"]["folds"])]


wildcard_constraints:
    plate="|".join(re.escape(p) for p in PLATES),
    well="|".join(ALL_WELLS),
    labelset="|".join(LABELSETS),
    fold="all|[0-9]+",
    row="[A-Z]+",
    column="[0-9]+",


# what the input functions need of each (plate, well), split once (plain lists: input functions run per job,
# a pandas filter per call made planning a 384-well plate take seconds, bench/dag_scale.py)
WELL_RECORDS = well_records(MANIFEST, with_planes=bool(Z_PROJECT))


def _well_record(wildcards):
    return WELL_RECORDS[(wildcards.plate, wildcards.well)]


def well_image_files(wildcards):
    """Raw TIFF paths of one well (ingest input; a file of several channels once)."""
    return _well_record(wildcards)["files"]


def well_image_table(wildcards):
    """[field, channel, path] of every raw file of one well, [field, channel, path, plane] with a z-projection,
    [field, channel, path, plane, file_channel] with files of several channels in the run (ingest params: reruns
    when files change; plateseg.io.manifest.well_records)."""
    return _well_record(wildcards)["table"]


def well_metadata(wildcards):
    """Metadata_* columns of one well."""
    return _well_record(wildcards)["metadata"]


def final_labels(wildcards):
    """The label store that the configured segmentation method produces for a well (LABELSETS)."""
    labelset = LABELSETS[config["segmentation"]["method"]]
    return f"results/{wildcards.plate}/{wildcards.well}/{labelset}.zarr"


def plate_well_profiles(wildcards):
    """Every well's profile row (pycytominer aggregate) of the plate."""
    return [f"results/{wildcards.plate}/wells/{w}.csv" for w in WELLS[wildcards.plate]]


def plate_well_summaries(wildcards):
    """Every well's summary row (counts, mean/median/SD) of the plate."""
    return [f"results/{wildcards.plate}/wells/{w}_summary.csv" for w in WELLS[wildcards.plate]]


def plate_label_stores(wildcards):
    """Label stores of every well of the plate for one label set (a segmentation method)."""
    store = LABELSETS[wildcards.labelset]
    return [f"results/{wildcards.plate}/{w}/{store}.zarr" for w in WELLS[wildcards.plate]]


def evaluated_labelsets():
    """Label sets scored against the ground truth: the final method's and those of evaluation.compare (and the
    cells, with cells.channel)."""
    return sorted({config["segmentation"]["method"], *config["evaluation"]["compare"]} | ({"cells"} if CELL_TRUTH else set()))


# ---- engines: training data, models, settings --------------------------------------------------


def training_annotations():
    """The annotated folder the models are trained on: the user's, or the synthetic set a rule writes."""
    return config["training"]["annotations"] or "results/training/synthetic"


def training_annotation_files(wildcards):
    """Input files of the training data: every file of a user's folder (so edits rerun training), or the
    synthetic folder (a rule output)."""
    folder = config["training"]["annotations"]
    if not folder:
        return [training_annotations()]
    files = [Path(folder) / "index.csv"] if (Path(folder) / "index.csv").is_file() else []
    for sub in ("images", "masks"):
        files += sorted(p for p in (Path(folder) / sub).iterdir() if p.is_file() and not p.name.startswith("."))
    return [str(p) for p in files]


def train_params(engine):
    """Input function: the settings of a run of ``engine`` on fold ``wildcards.fold``
    (plateseg.config.params.engine_settings)."""

    def _params(wildcards):
        return engine_settings(config, engine, wildcards.fold)

    return _params


def model_checkpoint(engine):
    """Input function: the checkpoint of ``engine`` that inference uses: the set's (or models.<engine>) with
    models.source pretrained, the one trained on all annotated images with train, and with finetune the one
    rule choose_model keeps (fine-tuned, or the set's where cross-validation says fine-tuning made it worse)."""

    def _checkpoint(wildcards=None):
        source = config["models"]["source"]
        if source == "pretrained":
            return config["models"][engine]
        return f"results/models/{engine}/{'final' if source == 'finetune' else 'all'}.pt"

    return _checkpoint


def scale_engine():
    """The engine whose probes measure the nucleus diameter for estimate_scale -- the U-Net whenever it runs
    (final method or evaluation.compare), else the Mask R-CNN."""
    return "unet" if {"unet", "ensemble"} & set(evaluated_labelsets()) else "maskrcnn"


def scale_inputs(wildcards):
    """The well image, plus the measuring engine's checkpoint with segmentation.rescale auto."""
    inputs = {"image": f"results/{wildcards.plate}/{wildcards.well}/image.zarr"}
    if config["segmentation"]["rescale"] == "auto":
        inputs["model"] = model_checkpoint(scale_engine())(wildcards)
    return inputs


def initial_checkpoint(engine):
    """The checkpoint the training of ``engine`` starts from: the set's (or models.<engine>) with
    models.source finetune; else none ([]: training from scratch)."""
    return config["models"][engine] if config["models"]["source"] == "finetune" else []


def finetune_rescale():
    """segmentation.rescale for the training rules with models.source finetune (the annotated images are zoomed as
    inference will zoom their fields for the set's models); None otherwise (training from scratch does not use it,
    so editing it retrains nothing)."""
    return config["segmentation"]["rescale"] if config["models"]["source"] == "finetune" else None


def oof_inputs(wildcards):
    """Fold k's models of both engines, the fold table and the training data (oof_candidates); with models.source
    finetune also rule choose_model's tables (an engine whose fine-tuning was rejected gives the set's candidates)."""
    inputs = {
        "unet": f"results/models/unet/{wildcards.fold}.pt",
        "maskrcnn": f"results/models/maskrcnn/{wildcards.fold}.pt",
        "folds": "results/training/folds.csv",
        "annotations": training_annotation_files(wildcards),
    }
    if config["models"]["source"] == "finetune":
        inputs["checks"] = [f"results/models/{engine}/finetune_check.csv" for engine in ("unet", "maskrcnn")]
    return inputs


def finetune_check_inputs(wildcards):
    """Inputs of choose_model: the fine-tuned fold models and all-data model of the engine, the checkpoint they started
    from, the fold table and the annotated images."""
    return {
        "folds_models": [f"results/models/{wildcards.engine}/{k}.pt" for k in FOLDS],
        "tuned": f"results/models/{wildcards.engine}/all.pt",
        "initial": initial_checkpoint(wildcards.engine),
        "folds": "results/training/folds.csv",
        "annotations": training_annotation_files(wildcards),
    }


def picker_file():
    """The picker that rule pick uses, trained here or the configured pretrained file."""
    if config["models"]["source"] == "pretrained" and config["models"]["picker"]:
        return config["models"]["picker"]
    # the trained picker; with models.source pretrained the ensemble needs models.picker (checked at load),
    # and without the ensemble rule pick is never run
    return "results/models/picker/picker.json"


def measure_inputs(wildcards):
    """The well image and its final labels, plus the picks table for the ensemble (engine, predicted IoU) and the
    cell and cytoplasm labels with cells.channel."""
    well = f"results/{wildcards.plate}/{wildcards.well}"
    inputs = {"image": f"{well}/image.zarr", "labels": final_labels(wildcards)}
    if config["segmentation"]["method"] == "ensemble":
        inputs["picks"] = f"{well}/picks.parquet"
    if CELLS:
        inputs.update(cells=f"{well}/cells.zarr", cytoplasm=f"{well}/cytoplasm.zarr")
    return inputs


def watershed_inputs(wildcards):
    """U-Net maps, plus the Mask R-CNN instance table when its centroids are the markers (seed 003)."""
    inputs = {"maps": f"results/{wildcards.plate}/{wildcards.well}/unet.zarr"}
    if config["watershed"]["markers"] == "points":
        inputs["points"] = f"results/{wildcards.plate}/{wildcards.well}/maskrcnn.parquet"
    return inputs


def cross_validation_inputs(wildcards):
    """Every fold model, the fold table and the training data (cross_validate_unet)."""
    return {
        "models": [f"results/models/unet/{k}.pt" for k in FOLDS],
        "folds": "results/training/folds.csv",
        "annotations": training_annotation_files(wildcards),
    }


def demo_groundtruth():
    """True when the ground truth is the demo plate's (files of rule demo_plate, known before they exist)."""
    gt = config["evaluation"]["groundtruth"]
    return DEMO and bool(gt) and os.path.normpath(gt) == os.path.normpath(os.path.join(config["demo"]["dir"], "groundtruth"))


def groundtruth_table(wildcards):
    """[well, field, ground-truth path] for every field of the plate that has a ground-truth file (every field
    of the demo plate, whose ground truth rule demo_plate writes)."""
    gt = Path(config["evaluation"]["groundtruth"])
    rows = MANIFEST[MANIFEST["plate"] == wildcards.plate][["well", "field"]].drop_duplicates()
    key = "cell_pattern" if wildcards.get("labelset") == "cells" else "pattern"
    pattern = config["evaluation"][key]
    table = [
        [w, int(f), str(gt / pattern.format(plate=wildcards.plate, well=w, field=int(f)))]
        for w, f in sorted(rows.itertuples(index=False))
    ]
    if demo_groundtruth():
        written = {os.path.normpath(p): p for p in demo_groundtruth_files(config)}
        found = [[w, f, written[os.path.normpath(p)]] for w, f, p in table if os.path.normpath(p) in written]
    else:
        found = [t for t in table if Path(t[2]).is_file()]
    if not found:
        raise ValueError(
            f"config key evaluation.groundtruth: no ground-truth file for plate {wildcards.plate} in {gt} "
            f"(expected names like {table[0][2]!r} from evaluation.{key})"
        )
    return found


def _has_cell_truth():
    """Whether any field has ground-truth cells (evaluation.cell_pattern): then the cells are evaluated too."""
    if not (CELLS and config["evaluation"]["groundtruth"]):
        return False
    if demo_groundtruth():
        return bool(config["demo"].get("cells"))
    gt, pattern = Path(config["evaluation"]["groundtruth"]), config["evaluation"]["cell_pattern"]
    fields = MANIFEST[["plate", "well", "field"]].drop_duplicates().itertuples(index=False)
    return any((gt / pattern.format(plate=p, well=w, field=int(f))).is_file() for p, w, f in fields)


CELL_TRUTH = _has_cell_truth()


def groundtruth_files(wildcards):
    return [t[2] for t in groundtruth_table(wildcards)]


# ---- the OME-Zarr HCS plate (results/{plate}/plate.zarr, plateseg.io.hcs) ---------------------------

_POSITIONS = MANIFEST[["plate", "well", "row", "column"]].drop_duplicates()
# (plate, row, column as in the path) -> well, and plate -> [(row, column)] of its wells
WELL_AT = {(r.plate, str(r.row), str(int(r.column))): r.well for r in _POSITIONS.itertuples()}
PLATE_POSITIONS = {p: sorted((str(r.row), int(r.column)) for r in _POSITIONS[_POSITIONS["plate"] == p].itertuples())
                   for p in PLATES}


def hcs_labelsets():
    """Label name in each field's labels/ group -> label set: the final labels as "nuclei", then the other
    label sets that the run makes anyway (the ensemble's engines, Mask R-CNN markers, evaluated sets)."""
    method, ran = config["segmentation"]["method"], engines_used(config)
    sets = {"nuclei": method, **{s: s for s in ("unet", "maskrcnn", "classical") if s in ran and s != method}}
    return {**sets, "cells": "cells", "cytoplasm": "cytoplasm"} if CELLS else sets


def hcs_well_inputs(wildcards):
    """The well image store and the label stores of hcs_labelsets() of the well at row/column."""
    well = WELL_AT[(wildcards.plate, wildcards.row, wildcards.column)]
    stores = [f"results/{wildcards.plate}/{well}/{LABELSETS.get(s, s)}.zarr" for s in hcs_labelsets().values()]
    return {"image": f"results/{wildcards.plate}/{well}/image.zarr", "labels": stores}


def hcs_plate_inputs(wildcards):
    """Every well and row group of the plate's HCS store."""
    root = f"results/{wildcards.plate}/plate.zarr"
    wells = [f"{root}/{r}/{c}" for r, c in PLATE_POSITIONS[wildcards.plate]]
    return wells + [f"{root}/{r}/zarr.json" for r in sorted({r for r, _ in PLATE_POSITIONS[wildcards.plate]})]


def plate_wells(wildcards):
    """(row, column) of every well of the plate (HCS plate metadata)."""
    return PLATE_POSITIONS[wildcards.plate]


def plate_field_count(wildcards):
    """The largest number of fields of a well of the plate (HCS plate metadata)."""
    m = MANIFEST[MANIFEST["plate"] == wildcards.plate]
    return int(m.groupby("well")["field"].nunique().max())


def used_engines():
    """The engines whose models the run uses (plateseg.config.checks.engines_used), U-Net first."""
    return [e for e in ("unet", "maskrcnn") if e in engines_used(config)]


def used_checkpoints(wildcards):
    """Engine -> the checkpoint inference uses, for the engines of used_engines()."""
    return {engine: model_checkpoint(engine)(wildcards) for engine in used_engines()}


def final_outputs():
    out = []
    for p in PLATES:
        out += [f"results/{p}/wells/{w}.csv" for w in WELLS[p]]
        out += [f"results/{p}/profiles.csv", f"results/{p}/plate_summary.csv", f"results/{p}/qc/plate_counts.png"]
        out += [f"results/{p}/plate.zarr/zarr.json"] + [f"results/{p}/qc/wells/{w}.png" for w in WELLS[p]]
        if config["evaluation"]["groundtruth"]:
            out += [f"results/{p}/evaluation/{labelset}.csv" for labelset in evaluated_labelsets()]
    if used_engines():
        out.append("results/qc/training_curves.png")
    if config["segmentation"]["method"] == "ensemble" and config["models"]["source"] != "pretrained":
        # the engines, ensemble and oracle compared on the annotated images (held out from every model)
        out += ["results/models/picker/cv_metrics.csv", "results/models/picker/importances.png"]
    return out


def mem_mb(base, per_thread=0):
    """Memory request that grows with the attempt, so a retried out-of-memory job gets more, and by ``per_thread``
    MB for each thread beyond the first (the blockwise rules hold one more block window per thread)."""

    def _mem(wildcards, threads, attempt):
        return (base + per_thread * (threads - 1)) * attempt

    return _mem


# MB of one more block window and its intermediate arrays, for each further thread of a blockwise rule: 90-125
# bytes per window pixel measured (bench/RESULTS.md, "Seams": 2 threads against 1); 125, ~560 MB at 2048 px blocks
BLOCK_THREAD_MB = -(-(config["tiling"]["block_size"] + 2 * config["tiling"]["block_halo"]) ** 2 * 125 // 2**20)


CONDA_ENV = "../../envs/plateseg.yaml"
# runtime device of the model rules (not a science setting): PLATESEG_DEVICE=auto|cpu|cuda|cuda:N in the
# environment of the jobs, default auto (CUDA when present, else CPU); see plateseg.engines.runtime.runtime_device
