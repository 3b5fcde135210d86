"""plateseg.engines.runtime: model files that are not what they claim fail with the file named."""
import shutil
from pathlib import Path

import pytest

from plateseg.engines import maskrcnn, unet

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.mark.parametrize("content", [b"", b"this is a text file renamed .pt\n", b"PK\x03\x04 not a zip"])
def test_a_file_that_is_no_checkpoint_names_the_file(tmp_path, content):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    for engine in (unet, maskrcnn):
        with pytest.raises(ValueError, match=rf"{path}: not a readable plateseg-\w+ checkpoint"):
            engine.load_checkpoint(path, "cpu")


def test_a_truncated_checkpoint_names_the_file(tmp_path):
    path = tmp_path / "truncated.pt"
    path.write_bytes((DATA / "legacy_unet.pt").read_bytes()[:100_000])
    with pytest.raises(ValueError, match=rf"{path}: not a readable plateseg-unet checkpoint"):
        unet.load_checkpoint(path, "cpu")


def test_a_checkpoint_of_the_other_engine_names_the_file(tmp_path):
    path = tmp_path / "unet.pt"
    shutil.copy(DATA / "legacy_unet.pt", path)
    with pytest.raises(ValueError, match=rf"{path} is not a plateseg-maskrcnn checkpoint"):
        maskrcnn.load_checkpoint(path, "cpu")
    model, meta = unet.load_checkpoint(path, "cpu")  # the same file is a good U-Net checkpoint
    assert meta["format"] == "plateseg-unet"
