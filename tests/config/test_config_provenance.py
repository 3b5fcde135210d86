import pytest

from plateseg.config.checks import ConfigError, check_config, ensure_demo
from plateseg.config.provenance import code_hash


def _config(tmp_path, **kw):
    cfg = {"input": {"dir": str(tmp_path), "scheme": "cellprofiler"}, "channels": {"names": {"1": "DNA"}, "nuclear": "1"},
           "demo": {"enabled": False}, "tiling": {"tile_size": 256, "halo": 32}, "evaluation": {"groundtruth": None}}
    for k, v in kw.items():
        a, b = k.split("__")
        cfg[a][b] = v
    return cfg


@pytest.mark.parametrize("change, key", [
    ({"input__dir": "/no/such/folder"}, "input.dir"),
    ({"input__scheme": "regex"}, "input.pattern"),
    ({"input__scheme": "samplesheet"}, "input.sample_sheet"),
    ({"channels__nuclear": "3"}, "channels.nuclear"),
    ({"tiling__halo": 300}, "tiling.halo"),
    ({"evaluation__groundtruth": "/no/gt"}, "evaluation.groundtruth"),
])
def test_check_config_names_the_key(tmp_path, change, key):
    check_config(_config(tmp_path))
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        check_config(_config(tmp_path, **change))


def test_ensure_demo_writes_once(tmp_path):
    cfg = {"demo": {"enabled": True, "dir": str(tmp_path / "demo"), "plate": "D", "rows": "A", "columns": [1],
                    "fields": 1, "size": 64, "seed": 0}}
    ensure_demo(cfg)
    truth = tmp_path / "demo" / "groundtruth" / "truth.csv"
    assert (tmp_path / "demo" / "images" / "D_A01_s1_w1.tif").is_file() and truth.is_file()
    mtime = truth.stat().st_mtime_ns
    ensure_demo(cfg)
    assert truth.stat().st_mtime_ns == mtime


def test_code_hash_changes_with_the_modules():
    a = code_hash("plateseg.segment.classical")
    assert a == code_hash("plateseg.segment.classical") and len(a) == 12
    assert a != code_hash("plateseg.segment.classical", "plateseg.measure.objects")
    with pytest.raises(ModuleNotFoundError):
        code_hash("plateseg.nope")
