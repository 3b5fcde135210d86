"""Import boundaries: the model-free packages never import torch (issue 11)."""
import subprocess
import sys

CHECK = """
import importlib, pkgutil, sys
import plateseg.ensemble, plateseg.io, plateseg.measure
names = []
for package in (plateseg.ensemble, plateseg.io, plateseg.measure):
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(info.name)
        names.append(info.name)
assert names, "no modules found"
assert "torch" not in sys.modules, [m for m in sys.modules if m.startswith("torch")][:3]
print(len(names))
"""


def test_ensemble_measure_and_io_import_no_torch():
    # a fresh interpreter: torch imported by another test must not hide an import here
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) >= 10
