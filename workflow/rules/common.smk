# Shared set-up: the manifest (parsed when the Snakefile loads), wildcard constraints,
# input functions and resource functions used by the rules.
import re
from pathlib import Path

from plateseg.config import check_config, ensure_demo, prepend_pythonpath
from plateseg.manifest import build_manifest, check_complete
from plateseg.provenance import code_hash

# rule scripts import the plateseg library of this checkout, also inside --use-conda environments
prepend_pythonpath(Path(workflow.basedir) / "src")
check_config(config)
ensure_demo(config)

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
MANIFEST = MANIFEST[MANIFEST["channel"].isin(list(config["channels"]["names"]))]
if MANIFEST.empty:
    raise ValueError(
        f"config channels.names lists channel ids {list(config['channels']['names'])}, "
        f"but no file of {config['input']['dir']} has one of them"
    )

PLATES = sorted(MANIFEST["plate"].unique())
WELLS = {p: sorted(MANIFEST.loc[MANIFEST["plate"] == p, "well"].unique()) for p in PLATES}
ALL_WELLS = sorted({w for ws in WELLS.values() for w in ws})
# label sets a well can have; the configured method's set is the final one
LABELSETS = {"classical": "classical"}


wildcard_constraints:
    plate="|".join(re.escape(p) for p in PLATES),
    well="|".join(ALL_WELLS),
    labelset="|".join(LABELSETS.values()),


def _well_rows(wildcards):
    m = MANIFEST
    return m[(m["plate"] == wildcards.plate) & (m["well"] == wildcards.well)]


def well_image_files(wildcards):
    """Raw TIFF paths of one well (ingest input)."""
    return sorted(_well_rows(wildcards)["path"])


def well_image_table(wildcards):
    """[field, channel, path] of every raw file of one well (ingest params: reruns when files change)."""
    rows = _well_rows(wildcards).sort_values(["field", "channel"])
    return [[int(r.field), str(r.channel), str(r.path)] for r in rows.itertuples()]


def well_metadata(wildcards):
    """Metadata_* columns of one well."""
    r = _well_rows(wildcards).iloc[0]
    return {
        "Metadata_Plate": str(r.plate),
        "Metadata_Well": str(r.well),
        "Metadata_Row": str(r.row),
        "Metadata_Column": int(r.column),
    }


def final_labels(wildcards):
    """The label store that the configured segmentation method produces for a well."""
    labelset = LABELSETS[config["segmentation"]["method"]]
    return f"results/{wildcards.plate}/{wildcards.well}/{labelset}.zarr"


def plate_well_summaries(wildcards):
    return [f"results/{wildcards.plate}/wells/{w}.csv" for w in WELLS[wildcards.plate]]


def plate_label_stores(wildcards):
    return [f"results/{wildcards.plate}/{w}/{wildcards.labelset}.zarr" for w in WELLS[wildcards.plate]]


def groundtruth_table(wildcards):
    """[well, field, ground-truth path] for every field of the plate that has a ground-truth file."""
    gt = Path(config["evaluation"]["groundtruth"])
    rows = MANIFEST[MANIFEST["plate"] == wildcards.plate][["well", "field"]].drop_duplicates()
    pattern = config["evaluation"]["pattern"]
    table = [
        [w, int(f), str(gt / pattern.format(plate=wildcards.plate, well=w, field=int(f)))]
        for w, f in sorted(rows.itertuples(index=False))
    ]
    found = [t for t in table if Path(t[2]).is_file()]
    if not found:
        raise ValueError(
            f"config key evaluation.groundtruth: no ground-truth file for plate {wildcards.plate} in {gt} "
            f"(expected names like {table[0][2]!r} from evaluation.pattern)"
        )
    return found


def groundtruth_files(wildcards):
    return [t[2] for t in groundtruth_table(wildcards)]


def final_outputs():
    out = []
    for p in PLATES:
        out += [f"results/{p}/wells/{w}.csv" for w in WELLS[p]]
        out += [f"results/{p}/plate_summary.csv", f"results/{p}/qc/plate_counts.png"]
        if config["evaluation"]["groundtruth"]:
            out.append(f"results/{p}/evaluation/{LABELSETS[config['segmentation']['method']]}.csv")
    return out


def mem_mb(base):
    """Memory request that grows with the attempt, so a retried out-of-memory job gets more."""

    def _mem(wildcards, attempt):
        return base * attempt

    return _mem


CONDA_ENV = "../../envs/plateseg.yaml"
