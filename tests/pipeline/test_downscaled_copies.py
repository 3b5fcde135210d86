"""plateseg.pipeline.candidates.downscaled_copies: shrunk copies of annotated images for the picker."""
import numpy as np

from plateseg.engines.scale import median_diameter
from plateseg.pipeline.candidates import downscaled_copies


def _field(n=9, side=12, size=120):
    lab = np.zeros((size, size), np.uint16)
    k = 0
    for y in range(n // 3):
        for x in range(3):
            k += 1
            lab[5 + 38 * y: 5 + 38 * y + side, 5 + 38 * x: 5 + 38 * x + side] = 10 * k  # sparse ids
    image = np.where(lab > 0, 1.0, 0.1)[None].astype(np.float32)
    return image, lab


def test_copies_bring_nuclei_to_the_target_diameter_with_matching_truth():
    image, lab = _field()
    source = median_diameter(lab)
    copies = downscaled_copies([("f", image, lab)], diameters=(7.0, 10.0, 30.0), max_zoom=0.85)
    # 30 px would need zooming in: skipped; 10 / 13.5 = 0.74 and 7 / 13.5 = 0.52 are made, in target order
    assert [c[0] for c in copies] == [f"f@{7 / source:.3f}", f"f@{10 / source:.3f}"]
    for copy_id, small, truth, src, zoom in copies:
        assert src == "f" and zoom == float(copy_id.split("@")[1])
        assert small.shape == (1,) + truth.shape
        assert small.shape[-2:] == tuple(int(round(120 * zoom)) for _ in range(2))
        # the truth is renumbered 1..n, keeps every nucleus and lands on the image's bright pixels
        assert sorted(np.unique(truth)) == list(range(10))
        assert abs(median_diameter(truth) - source * zoom) < 1.5
        assert small[0][truth > 0].mean() > 0.8 > small[0][truth == 0].mean()


def test_no_copies_of_images_with_too_few_nuclei_or_of_nothing():
    image, lab = _field(n=3)
    assert downscaled_copies([("f", image, lab)], min_objects=5) == []
    assert downscaled_copies([]) == []
