"""Resumable well inference: a killed job resumes at its first unwritten tile, with the same result."""
import logging

import numpy as np
import pytest
import torch

from plateseg.pipeline.infer import infer_well_maps, partial_path, read_progress
from plateseg.io.ngff import channel_names, list_fields, open_field, write_well_image
from plateseg.engines.unet import build_unet, checkpoint_meta, save_checkpoint

torch.set_num_threads(1)

SMALL = dict(encoder_name="resnet18", encoder_depth=3, decoder_channels=(16, 8, 8), crop_size=32)


class Killed(RuntimeError):
    pass


def recording_logger(name):
    """A logger that keeps its messages in ``logger.messages``."""
    logger = logging.getLogger(f"test_inference.{name}")
    logger.messages = []
    logger.handlers[:] = []

    class Keep(logging.Handler):
        def emit(self, record):
            logger.messages.append(record.getMessage())

    logger.addHandler(Keep())
    logger.setLevel(logging.INFO)
    return logger


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("infer")
    rng = np.random.default_rng(0)
    fields = {f: (rng.random((2, 80, 96)) * 1000).astype(np.uint16) for f in (1, 2)}
    write_well_image(d / "image.zarr", fields, ["DNA", "Marker"], tile_size=32, pixel_size=0.65)
    torch.manual_seed(0)
    for name, seed in (("model.pt", 0), ("other.pt", 1)):
        torch.manual_seed(seed)
        save_checkpoint(d / name, build_unet(SMALL["encoder_name"], 3, SMALL["decoder_channels"]),
                        checkpoint_meta(SMALL))
    reference = infer_well_maps(d / "image.zarr", d / "model.pt", d / "reference.zarr", halo=8, batch_size=2)
    return d, reference


def _maps(store):
    return {f: open_field(store, f)[...] for f in list_fields(store)}


def test_maps_store_layout(setup):
    d, reference = setup
    assert list_fields(reference) == [1, 2]
    assert channel_names(reference) == ["foreground", "boundary", "centre"]
    arr = open_field(reference, 1)
    assert arr.shape == (3, 80, 96) and arr.dtype == np.float16 and arr.chunks == (1, 32, 32)
    maps = arr[...].astype(np.float32)
    assert (maps >= 0).all() and (maps <= 1).all() and maps.std() > 0
    assert not partial_path(reference).exists()


def test_killed_job_resumes_at_first_unwritten_tile(setup):
    d, reference = setup
    out = d / "run" / "unet.zarr"
    n_written = []

    def kill_after_8(field, tile):  # field 1 has 9 tiles: killed inside field 1 ...
        n_written.append((field, tile.number))
        if len(n_written) == 8:
            raise Killed

    with pytest.raises(Killed):
        infer_well_maps(d / "image.zarr", d / "model.pt", out, halo=8, batch_size=2, on_tile_written=kill_after_8)
    assert not out.exists()
    assert read_progress(partial_path(out))["next_tile"] == {"1": 8, "2": 0}

    resumed = []
    log = recording_logger("resume")
    infer_well_maps(d / "image.zarr", d / "model.pt", out, halo=8, batch_size=2, log=log,
                    on_tile_written=lambda f, t: resumed.append((f, t.number)))
    assert any("field 1 (1/2): 9 tiles" in m and "resuming at tile 8" in m for m in log.messages), log.messages
    assert resumed[0] == (1, 8) and resumed[1] == (2, 0) and len(resumed) == 1 + 9
    assert out.exists() and not partial_path(out).exists()
    for f, ref in _maps(reference).items():
        np.testing.assert_array_equal(_maps(out)[f], ref)


def test_partial_store_of_another_model_is_discarded(setup):
    d, _ = setup
    out = d / "run2" / "unet.zarr"

    def kill(field, tile):
        raise Killed

    with pytest.raises(Killed):
        infer_well_maps(d / "image.zarr", d / "other.pt", out, halo=8, on_tile_written=kill)
    assert read_progress(partial_path(out))["next_tile"]["1"] == 1
    log = recording_logger("discard")
    infer_well_maps(d / "image.zarr", d / "model.pt", out, halo=8, log=log)
    text = "\n".join(log.messages)
    assert "discarding" in text and "resuming" not in text
    for f, ref in _maps(d / "reference.zarr").items():
        np.testing.assert_array_equal(_maps(out)[f], ref)
