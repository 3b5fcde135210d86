import numpy as np
import pytest

from plateseg.measure.objects import measure_field
from plateseg.measure.texture import glcm_features


def test_texture_sees_only_the_object_and_orders_coarse_and_fine_texture():
    rng = np.random.default_rng(0)
    mask = np.zeros((40, 40), bool)
    mask[5:35, 5:35] = True
    noise = rng.integers(0, 1000, (40, 40)).astype(float)  # fine texture: neighbours unrelated
    blobs = np.kron(rng.integers(0, 1000, (5, 5)), np.ones((8, 8)))  # coarse: constant over 8 px
    fine, coarse = glcm_features(noise, mask), glcm_features(blobs, mask)
    assert fine["Contrast"] > 2 * coarse["Contrast"] and coarse["Correlation"] > fine["Correlation"] + 0.3
    assert coarse["InverseDifferenceMoment"] > fine["InverseDifferenceMoment"]
    # pixels outside the mask change nothing
    framed = noise.copy()
    framed[~mask] = 1e6
    assert glcm_features(framed, mask) == pytest.approx(fine)
    flat = glcm_features(np.full((40, 40), 7.0), mask)
    assert flat["Contrast"] == 0 and flat["Correlation"] == 1 and flat["AngularSecondMoment"] == 1


def test_measure_field_has_texture_per_channel_and_nan_for_tiny_objects():
    lab = np.zeros((30, 30), np.int32)
    lab[2:22, 2:22] = 1
    lab[26, 26] = 2  # one pixel: no pair 3 px apart
    img = np.stack([np.kron(np.indices((10, 10)).sum(0) % 2, np.ones((3, 3)))[:30, :30] * 100.0, np.ones((30, 30))])
    df = measure_field(lab, img, ["DNA", "Marker"])
    assert df.loc[0, "Nuclei_Texture_Contrast_DNA_3"] > 0.5 and df.loc[0, "Nuclei_Texture_Contrast_Marker_3"] == 0
    assert df.loc[[1], [c for c in df.columns if "_Texture_" in c]].isna().all().all()
