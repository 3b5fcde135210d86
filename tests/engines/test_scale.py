"""plateseg.engines.scale: which fields are zoomed, by how much, and that zooming there and back keeps the objects."""
import numpy as np
import pandas as pd
import pytest

from plateseg.engines.scale import (diameter_record, model_scale, resize_labels, resize_maps, scale_factor,
                                    scaled_watershed, zoom_image)


def discs(shape, radius, spacing, offset=0):
    """A label image of discs of ``radius`` on a grid of ``spacing`` (ids 1..n)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    lab = np.zeros(shape, np.uint32)
    k = 0
    for cy in range(spacing // 2 + offset, shape[0] - radius, spacing):
        for cx in range(spacing // 2 + offset, shape[1] - radius, spacing):
            k += 1
            lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2] = k
    return lab


def test_only_fields_outside_the_covered_sizes_are_zoomed_to_the_nearest_trained_size():
    trained, covered = (10.0, 50.0), (0.6, 1.6)  # covers 6 to 80 px
    assert scale_factor(6.5, trained, covered) == 1.0 and scale_factor(79.0, trained, covered) == 1.0
    assert scale_factor(120.0, trained, covered) == pytest.approx(50 / 120, abs=1e-3)
    assert scale_factor(4.0, trained, covered) == pytest.approx(2.5)
    # without a record of the training sizes nothing is zoomed
    assert scale_factor(120.0, None) == 1.0 and scale_factor(None, trained) == 1.0


def test_diameter_record_of_training_masks():
    small, large = discs((64, 64), 3, 16), discs((200, 200), 20, 60)
    rec = diameter_record([small] * 19 + [large])
    d_small = 2 * np.sqrt(np.bincount(small.ravel())[1:].mean() / np.pi)
    d_large = 2 * np.sqrt(np.bincount(large.ravel())[1:].mean() / np.pi)
    assert rec["nucleus_diameter"] == pytest.approx(d_small, abs=0.01)  # most objects are small
    lo, hi = rec["nucleus_diameter_range"]
    assert lo == pytest.approx(d_small, abs=0.01) and d_small < hi <= d_large
    assert diameter_record([np.zeros((8, 8), int)]) == {}


def test_model_scale_reads_the_checkpoint_record():
    meta = {"nucleus_diameter": 20.0, "nucleus_diameter_range": [10.0, 48.0], "pixel_size": None,
            "params": {"scale_range": [0.6, 1.6]}}
    assert model_scale(meta) == ((10.0, 48.0), None, (0.6, 1.6))
    assert model_scale({})[0] is None


@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_zoom_and_resize_back_keep_every_object(factor):
    lab = discs((120, 160), 9, 30)
    image = (lab > 0).astype(np.float32)[None] * 1000
    zoomed = zoom_image(image, factor)
    assert zoomed.shape == (1, round(120 * factor), round(160 * factor)) and zoomed.dtype == np.float32
    # labels drawn at the zoomed scale and resized back land on the original objects
    small = resize_labels(lab, zoomed.shape[-2:])
    back = resize_labels(small, lab.shape)
    assert set(np.unique(back)) == set(np.unique(lab))
    inter = ((back > 0) & (lab > 0)).sum() / ((back > 0) | (lab > 0)).sum()
    assert inter > 0.85
    maps = resize_maps(np.stack([zoomed[0] / 1000] * 3), lab.shape)
    assert maps.shape == (3, 120, 160) and abs((maps[0] > 0.5).mean() - (lab > 0).mean()) < 0.02


def test_watershed_pixel_settings_follow_the_zoom():
    ws = {"mode": "centre", "min_area": 20, "peak_min_distance": 5, "fg_threshold": 0.7}
    assert scaled_watershed(ws, 1.0) == ws
    assert scaled_watershed(ws, 0.25) == {**ws, "min_area": 320, "peak_min_distance": 20}
    assert scaled_watershed(ws, 4.0) == {**ws, "min_area": 1, "peak_min_distance": 1}


def test_candidate_features_of_a_zoomed_field_are_in_the_model_pixels():
    from plateseg.ensemble.features import candidate_features

    model_scale_labels = discs((120, 120), 8, 30)
    field = resize_labels(model_scale_labels, (240, 240))  # the field shows the nuclei twice as large
    at_model = candidate_features({"unet": model_scale_labels}).set_index("label")
    converted = candidate_features({"unet": field}, scale=0.5).set_index("label")
    raw = candidate_features({"unet": field}).set_index("label")
    for f, tol in (("area", 0.06), ("equivalent_diameter_area", 0.04), ("perimeter", 0.15), ("field_density", 0.01),
                   ("solidity", 0.05)):
        assert np.allclose(converted[f], at_model[f], rtol=tol), f
    assert (raw["area"] > 3 * at_model["area"]).all()  # unconverted they would be off by 4x
    assert isinstance(converted, pd.DataFrame)


class _RecordedField:
    """A field (numpy array) that records the height x width of every window read from it."""

    def __init__(self, arr):
        self.arr, self.shape, self.dtype, self.reads = arr, arr.shape, arr.dtype, []

    def __getitem__(self, key):
        out = np.asarray(self.arr[key])
        self.reads.append(int(np.prod(out.shape[-2:])))
        return out


@pytest.mark.parametrize("name", ["unet", "maskrcnn"])
def test_a_zoomed_field_is_read_window_by_window_and_its_outputs_are_in_field_pixels(name, request):
    """Inference at zoom 0.5 on a field shown 2x larger reads only windows of the model's tile and halo in the
    field's pixels (never a zoomed copy of the field) and gives what the model gives on the field at its own
    scale, resized to the field."""
    from plateseg.engines import maskrcnn, unet
    from plateseg.engines.scale import field_tiling
    from conftest import make_blobs

    module = {"unet": unet, "maskrcnn": maskrcnn}[name]
    model = request.getfixturevalue(f"{name}_trained")[0]
    meta = module.checkpoint_meta(request.getfixturevalue(f"{name}_tiny"))
    small, _ = make_blobs(7, shape=(96, 96))
    big = np.repeat(np.repeat(small, 2, axis=1), 2, axis=2)  # the same field, 2x larger
    field = _RecordedField(big)
    tile, halo = 32, 8
    ftile, fhalo = field_tiling(tile, halo, 0.5)
    assert (ftile, fhalo) == (64, 16)
    kwargs = dict(tile_size=tile, halo=halo, batch_size=2, device="cpu", stats_max_pixels=1024)
    if name == "unet":
        zoomed = unet.predict_maps(model, meta, field, zoom=0.5, **kwargs)
        native = resize_maps(unet.predict_maps(model, meta, small, **kwargs), big.shape[-2:])
        assert zoomed.shape == native.shape == (len(meta["heads"]),) + big.shape[-2:]
        assert float(np.abs(zoomed - native).mean()) < 0.05
    else:
        kwargs["score_threshold"] = 0.05  # a model trained for seconds: low scores
        zoomed, table = maskrcnn.predict_instances(model, meta, field, zoom=0.5, **kwargs)
        native = resize_labels(maskrcnn.predict_instances(model, meta, small, **kwargs)[0], big.shape[-2:])
        assert zoomed.shape == big.shape[-2:] and zoomed.max() > 0
        assert table["centroid_y"].max() > small.shape[-2]  # the table is in field pixels
        both, either = ((native > 0) & (zoomed > 0)).sum(), ((native > 0) | (zoomed > 0)).sum()
        assert both / either > 0.8, both / either  # the same masks (this model's instances are weak)
    window = (ftile + 2 * fhalo) ** 2
    assert max(field.reads) <= max(window, 1024) < big.shape[-1] * big.shape[-2]


def test_finetuning_zooms_annotated_images_as_inference_zooms_their_fields():
    """Fine-tuning trains on an annotated image at the zoom inference gives its field (field_zoom, as rule
    estimate_scale): 6 px nuclei for a model trained on 24-28 px ones are zoomed into that range; nuclei the model
    covers are not; rescale none / a number apply as at inference."""
    from plateseg.engines.scale import field_zoom, median_diameter, training_zooms, zoom_annotated

    meta = {"nucleus_diameter_range": [24.0, 28.0], "params": {"scale_range": [0.9, 1.1]}}
    small, covered = discs((96, 96), 3, 16), discs((200, 200), 13, 50)
    zooms = training_zooms([small, covered], meta)
    d = median_diameter(small)
    assert zooms == [field_zoom("auto", meta, d)[0], 1.0] and zooms[0] == pytest.approx(24.0 / d, abs=1e-3)
    images, masks = zoom_annotated([(small > 0)[None] * 1.0, (covered > 0)[None] * 1.0], [small, covered], zooms)
    assert images[0].shape[-2:] == masks[0].shape == (round(96 * zooms[0]),) * 2
    assert 24.0 * 0.9 <= median_diameter(masks[0]) <= 28.0 * 1.1
    assert masks[1] is covered and set(np.unique(masks[0])) == set(np.unique(small))
    assert training_zooms([small], meta, rescale="none") == [1.0]
    assert training_zooms([small], meta, rescale=0.5) == [0.5]
