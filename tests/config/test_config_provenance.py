"""Config checks, the demo plate (plateseg.config.demo) and the automatic rerun triggers
(plateseg.config.provenance: the hash of the library modules a rule's script reaches)."""
from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from plateseg.config.checks import ConfigError, check_config
from plateseg.config.demo import demo_files, demo_manifest, ensure_demo
from support import checked_config as _config
from plateseg.config.provenance import code_hash, imported_modules, module_closure, script_code_hash

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("change, key", [
    ({"input__dir": "/no/such/folder"}, "input.dir"),
    ({"input__scheme": "regex"}, "input.pattern"),
    ({"input__scheme": "samplesheet"}, "input.sample_sheet"),
    ({"channels__nuclear": "3"}, "channels.nuclear"),
    ({"tiling__halo": 300}, "tiling.halo"),
    ({"tiling__block_size": 1000}, "tiling.block_size"),
    ({"tiling__block_halo": 4096}, "tiling.block_halo"),
    ({"evaluation__groundtruth": "/no/gt"}, "evaluation.groundtruth"),
    # the demo's images are in demo.dir/images, CellProfiler-named
    ({"demo__enabled": True, "demo__dir": "d", "input__dir": "elsewhere"}, "input.dir"),
    ({"demo__enabled": True, "demo__dir": "d", "input__dir": "d/images", "input__scheme": "operetta"}, "input.scheme"),
])
def test_check_config_names_the_key(tmp_path, change, key):
    check_config(_config(tmp_path))
    check_config(_config(tmp_path, demo__enabled=True, demo__dir="d", input__dir="./d/images/"))
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        check_config(_config(tmp_path, **change))


def _demo_config(tmp_path, **demo):
    return {"input": {"dir": str(tmp_path / "demo" / "images")},
            "demo": {"enabled": True, "dir": str(tmp_path / "demo"), "plate": "D", "rows": "BA", "columns": [2, 1, 10],
                     "fields": 2, "size": 64, "seed": 0, **demo}}


def test_ensure_demo_writes_once(tmp_path):
    cfg = _demo_config(tmp_path, rows="A", columns=[1], fields=1)
    ensure_demo(cfg)
    truth = tmp_path / "demo" / "groundtruth" / "truth.csv"
    assert (tmp_path / "demo" / "images" / "D_A01_s1_w1.tif").is_file() and truth.is_file()
    mtime = truth.stat().st_mtime_ns
    ensure_demo(cfg)
    assert truth.stat().st_mtime_ns == mtime


def test_demo_manifest_and_files_are_known_before_the_demo_is_written(tmp_path):
    """The workflow builds the demo's manifest from its config (rule demo_plate writes the files later)."""
    from plateseg.io.manifest import build_manifest

    cfg = _demo_config(tmp_path)
    manifest = demo_manifest(cfg)
    assert not (tmp_path / "demo").exists()
    ensure_demo(cfg)
    written = sorted(str(p) for p in (tmp_path / "demo").rglob("*") if p.is_file())
    assert sorted(demo_files(cfg)) == written
    built, unmatched = build_manifest(cfg["input"]["dir"], "cellprofiler")
    assert unmatched == []
    pd.testing.assert_frame_equal(manifest, built)


# ---- rerun triggers ------------------------------------------------------------------------------


def _tree(root: Path, files: dict) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


@pytest.fixture
def fake_src(tmp_path):
    """A tiny package tree ``plateseg`` with every kind of import."""
    return _tree(tmp_path / "src", {
        "plateseg/__init__.py": "__version__ = '0'\n",
        "plateseg/a/__init__.py": "",
        "plateseg/a/top.py": "import os\nimport plateseg.a.helper\n",
        "plateseg/a/helper.py": "def f():\n    from plateseg.b import inner\n    return inner\n",
        "plateseg/b/__init__.py": "from . import sibling\n",
        "plateseg/b/inner.py": "from ..c.deep import thing\nfrom plateseg import __version__\n",
        "plateseg/b/sibling.py": "X = 1\n",
        "plateseg/c/__init__.py": "",
        "plateseg/c/deep.py": "import numpy\nthing = 1\n",
        "plateseg/c/unused.py": "Y = 2\n",
        "plateseg/d/__init__.py": "",
        "plateseg/d/one.py": "",
        "plateseg/d/two.py": "",
        "scripts/step.py": "import importlib\nfrom plateseg.a.top import x\n",
        "scripts/dynamic.py": "import importlib\nname = 'one'\nm = importlib.import_module(f'plateseg.d.{name}')\n",
        "scripts/other.py": "from plateseg.c import unused\n",
    })


def test_imported_modules_finds_every_kind_of_import():
    src = "import a.b\nfrom c.d import e, f\ndef g():\n    import h\nclass K:\n    from .m import n\n"
    assert imported_modules(src, name="pkg.sub.mod") == {"a.b", "c.d", "c.d.e", "c.d.f", "h", "pkg.sub.m", "pkg.sub.m.n"}
    assert imported_modules("from .. import x", name="pkg.sub.mod") == {"pkg", "pkg.x"}
    assert imported_modules("import importlib\nimportlib.import_module('p.q')") == {"importlib", "p.q"}


def test_module_closure_follows_the_library_imports(fake_src):
    closure = module_closure(["plateseg.a.top"], fake_src)
    assert list(closure) == ["plateseg", "plateseg.a", "plateseg.a.helper", "plateseg.a.top", "plateseg.b",
                             "plateseg.b.inner", "plateseg.b.sibling", "plateseg.c", "plateseg.c.deep"]
    assert closure["plateseg.b"] == fake_src / "plateseg" / "b" / "__init__.py"
    assert "plateseg.c.unused" not in module_closure(["plateseg.a.top"], fake_src)


def test_script_code_hash_changes_exactly_with_the_modules_a_script_reaches(fake_src):
    step, other, dynamic = (fake_src / "scripts" / f"{n}.py" for n in ("step", "other", "dynamic"))
    before = {s: script_code_hash(s, src=fake_src) for s in (step, other, dynamic)}
    assert len(set(before.values())) == 3 and all(len(h) == 12 for h in before.values())
    with open(fake_src / "plateseg" / "c" / "deep.py", "a") as f:  # reached by step only
        f.write("NEW = 3\n")
    after = {s: script_code_hash(s, src=fake_src) for s in (step, other, dynamic)}
    assert after[step] != before[step] and after[other] == before[other] and after[dynamic] == before[dynamic]
    (fake_src / "plateseg" / "d" / "two.py").write_text("Z = 1\n")  # a dynamic import covers its whole package
    assert script_code_hash(dynamic, src=fake_src) != before[dynamic]
    (fake_src / "plateseg" / "b" / "__init__.py").write_text("from . import sibling  # changed\n")  # a package init
    assert script_code_hash(step, src=fake_src) != after[step]
    with pytest.raises(ModuleNotFoundError):
        script_code_hash(step, src=fake_src / "nowhere")


def test_code_hash_covers_the_closure():
    a = code_hash("plateseg.segment.classical")
    assert a == code_hash("plateseg.segment.classical") and len(a) == 12
    assert a != code_hash("plateseg.segment.classical", "plateseg.measure.objects")
    assert code_hash("plateseg.io.ingest") == code_hash("plateseg.io.ingest", "plateseg.io.files")  # ingest imports files
    with pytest.raises(ModuleNotFoundError):
        code_hash("plateseg.nope")


def test_rule_code_hashes_import_no_torch():
    """Building every rule's trigger, as the workflow does when it loads, imports neither torch nor the library."""
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from plateseg.config.provenance import script_code_hash
        hashes = [script_code_hash(p) for p in sorted(Path({str(REPO / 'workflow' / 'scripts')!r}).glob('*.py'))]
        assert len(hashes) > 10
        heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'numpy', 'pandas'))
        assert not heavy, heavy
        loaded = sorted(m for m in sys.modules if m.startswith('plateseg'))
        assert loaded == ['plateseg', 'plateseg.config', 'plateseg.config.provenance'], loaded
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def _rules():
    """(rule file, rule name, script name, code argument) of every rule of the workflow."""
    found = []
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"\n(?=\s*rule \w+:)", smk.read_text()):
            m = re.match(r"\s*rule (\w+):", block)
            if not m:
                continue
            script = re.search(r'script:\s*\n\s*"\.\./scripts/(\w+)\.py"', block)
            code = re.search(r"^\s*code=(.*),$", block, re.M)
            found.append((smk.name, m.group(1), script and script.group(1), code and code.group(1)))
    return found


def test_every_rule_is_triggered_by_the_code_of_its_script():
    rules = _rules()
    assert len(rules) > 15
    for smk, rule, script, code in rules:
        assert script, f"{smk} rule {rule}: no script"
        assert code == f'script_code("{script}")', f"{smk} rule {rule}: code={code}, script {script}.py"


def test_no_hand_kept_module_lists():
    for path in [*(REPO / "workflow").rglob("*.smk"), *(REPO / "src").rglob("*.py"), REPO / "Snakefile"]:
        text = path.read_text()
        assert "CODE_MODULES" not in text and "declared_modules" not in text, path
        if path.suffix == ".smk":
            assert not re.search(r"\bcode_hash\(", text), path
