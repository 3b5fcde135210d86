"""Config checks of the U-Net and Mask R-CNN keys (plateseg.config.checks.check_config)."""
import pytest

from plateseg.config.checks import ConfigError, check_config

from support import checked_config as _config


@pytest.mark.parametrize("change, key", [
    ({"models__source": "pretrained"}, "models.unet"),
    ({"models__source": "pretrained", "models__unet": "/no/model.pt"}, "models.unet"),
    ({"training__annotations": "/no/annotations"}, "training.annotations"),
    ({"unet__decoder_channels": [64, 32, 16]}, "unet.decoder_channels"),
    ({"unet__crop_size": 100}, "unet.crop_size"),
    ({"unet__p_low": 99.9}, "unet.p_low"),
])
def test_unet_keys_are_checked(tmp_path, change, key):
    check_config(_config(tmp_path))
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        check_config(_config(tmp_path, **change))


def test_ensemble_needs_both_engines_and_a_pretrained_picker(tmp_path):
    from plateseg.config.checks import engines_used

    assert engines_used(_config(tmp_path, segmentation__method="ensemble")) == {"ensemble", "unet", "maskrcnn"}
    check_config(_config(tmp_path, segmentation__method="ensemble"))
    for engine in ("unet", "maskrcnn"):
        (tmp_path / f"{engine}.pt").write_bytes(b"")
    pretrained = dict(segmentation__method="ensemble", models__source="pretrained", models__unet=str(tmp_path / "unet.pt"),
                      models__maskrcnn=str(tmp_path / "maskrcnn.pt"))
    with pytest.raises(ConfigError, match=r"models\.picker"):
        check_config(_config(tmp_path, **pretrained))
    (tmp_path / "picker.json").write_text("{}")
    check_config(_config(tmp_path, **pretrained, models__picker=str(tmp_path / "picker.json")))


@pytest.mark.parametrize("change, key", [
    ({"segmentation__method": "maskrcnn", "models__source": "pretrained"}, "models.maskrcnn"),
    ({"segmentation__method": "maskrcnn", "maskrcnn__p_low": 99.9}, "maskrcnn.p_low"),
    ({"segmentation__method": "maskrcnn", "maskrcnn__rpn_post_nms_top_n_test": 10}, "maskrcnn.rpn_post_nms_top_n_test"),
    # the U-Net path with Mask R-CNN centroids as markers needs the Mask R-CNN checkpoint too
    ({"watershed__markers": "points", "models__source": "pretrained", "models__unet": __file__}, "models.maskrcnn"),
    # a compared engine is checked when there is ground truth to compare with
    ({"evaluation__groundtruth": ".", "evaluation__compare": ["maskrcnn"], "maskrcnn__p_low": 99.9}, "maskrcnn.p_low"),
])
def test_maskrcnn_keys_are_checked_when_mask_rcnn_runs(tmp_path, change, key):
    check_config(_config(tmp_path))
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        check_config(_config(tmp_path, **change))
    # the same keys are not checked when Mask R-CNN does not run
    kept = {k: v for k, v in change.items() if k.startswith(("maskrcnn__", "models__"))}
    check_config(_config(tmp_path, **{"models__unet": __file__, **kept}))


def test_unet_keys_are_not_checked_for_the_classical_method(tmp_path):
    check_config(_config(tmp_path, segmentation__method="classical", models__source="pretrained"))


def test_pretrained_checkpoint_and_annotation_folder_are_accepted(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"")
    check_config(_config(tmp_path, models__source="pretrained", models__unet=str(tmp_path / "model.pt")))
    for sub in ("images", "masks"):
        (tmp_path / "ann" / sub).mkdir(parents=True)
    check_config(_config(tmp_path, training__annotations=str(tmp_path / "ann")))
