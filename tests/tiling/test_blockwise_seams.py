"""Block-by-block segmentation of a field larger than tiling.block_size agrees with the whole field's (issue 16):
the rules' own functions on real zarr stores, a dense synthetic field of touching nuclei, blocks of 128 px
with a halo of 32 (the benchmark's 4096 px field with blocks of 512 is bench/seams.py). Blocks run in parallel on
the rule's threads (plateseg.tiling.grid.map_windows): each step run with threads 3 gives the serial run's labels,
ids and tables, byte for byte."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import zarr
from scipy import ndimage as ndi

from plateseg.evaluation.agreement import label_agreement
from plateseg.io.ngff import read_labels, write_well_image
from plateseg.io.synth import synth_field
from plateseg.labels import centroids
from plateseg.pipeline.classical import classical_well
from plateseg.pipeline.watershed import watershed_well

BLOCK, HALO = 128, 32


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    """A 448 x 448 field (4 x 4 blocks, the last ones partial) of dense, touching synthetic nuclei."""
    image, truth = synth_field(7, shape=(448, 448), density=3.0, cluster_fraction=0.6)
    d = tmp_path_factory.mktemp("seams")
    write_well_image(d / "image.zarr", {1: image}, ["DNA", "Marker"], 64, 1.0)
    return d, image, truth


def _maps_of(truth):
    """U-Net-like maps of the true nuclei: blurred foreground, boundaries, centre heat map."""
    from skimage.segmentation import find_boundaries

    fg = ndi.gaussian_filter((truth > 0).astype(np.float32), 1.0)
    boundary = ndi.gaussian_filter(find_boundaries(truth).astype(np.float32), 1.0)
    centre = np.zeros(truth.shape, np.float32)
    cy, cx = np.round(centroids(truth)).astype(int).T
    centre[cy, cx] = 1.0
    centre = ndi.gaussian_filter(centre, 2.0)
    return np.stack([fg, boundary, centre / centre.max()])


def _assert_agrees(whole, blocked):
    agreement = label_agreement(whole, blocked)
    assert agreement["n_reference"] > 100  # dense: many objects cross the seams
    assert agreement["matched_fraction"] >= 0.995, agreement
    assert agreement["split"] == 0 and agreement["extra"] == 0, agreement
    assert np.array_equal(np.unique(blocked), np.arange(blocked.max() + 1))  # sequential 1..N
    return agreement


def _block_stats(store):
    return zarr.open_group(str(store), mode="r").attrs["plateseg"]["blocks"]["1"]


def _assert_same_store(serial, parallel):
    """Two label stores written with threads 1 and 3: the same labels, array for array, and the same attrs."""
    a, b = read_labels(serial, 1), read_labels(parallel, 1)
    assert a.dtype == b.dtype and np.array_equal(a, b)
    attrs = [zarr.open_group(str(store), mode="r").attrs.asdict() for store in (serial, parallel)]
    assert attrs[0] == attrs[1]


def test_classical_blocks_agree_with_the_whole_field(field):
    d, _, truth = field
    settings = {"sigma": 1.0, "threshold": "otsu", "min_distance": 5, "min_area": 20}
    classical_well(d / "image.zarr", d / "whole.zarr", 0, settings, tile_size=64)
    classical_well(d / "image.zarr", d / "blocks.zarr", 0, settings, tile_size=64, block_size=BLOCK, halo=HALO)
    whole, blocked = read_labels(d / "whole.zarr", 1), read_labels(d / "blocks.zarr", 1)
    agreement = _assert_agrees(whole, blocked)
    stats = _block_stats(d / "blocks.zarr")
    assert stats["blocks"] == 16 and stats["objects"] == agreement["n_labels"] == int(blocked.max())
    assert stats["on_seams"] > 10 and stats["cut_by_halo"] == 0  # objects crossing seams are kept whole
    assert _block_stats(d / "whole.zarr")["blocks"] == 1  # block_size None: the field is one window
    classical_well(d / "image.zarr", d / "blocks_3.zarr", 0, settings, tile_size=64, block_size=BLOCK, halo=HALO,
                   threads=3)
    _assert_same_store(d / "blocks.zarr", d / "blocks_3.zarr")


@pytest.mark.parametrize("mode", ["centre", "points"])
def test_watershed_blocks_agree_with_the_whole_field(field, mode):
    d, _, truth = field
    maps = _maps_of(truth)
    store = d / f"maps_{mode}.zarr"
    write_well_image(store, {1: maps}, ["fg", "boundary", "centre"], 64, 1.0)
    cy, cx = centroids(truth).T
    pd.DataFrame({"field": 1, "centroid_y": cy, "centroid_x": cx}).to_parquet(d / "points.parquet")
    settings = {"mode": mode, "fg_threshold": 0.5, "peak_threshold": 0.3, "peak_min_distance": 4, "min_area": 10}
    kw = dict(points=d / "points.parquet", tile_size=64)
    watershed_well(store, d / f"ws_whole_{mode}.zarr", settings, **kw)
    watershed_well(store, d / f"ws_blocks_{mode}.zarr", settings, block_size=BLOCK, halo=HALO, **kw)
    whole, blocked = read_labels(d / f"ws_whole_{mode}.zarr", 1), read_labels(d / f"ws_blocks_{mode}.zarr", 1)
    _assert_agrees(whole, blocked)
    watershed_well(store, d / f"ws_blocks_{mode}_3.zarr", settings, block_size=BLOCK, halo=HALO, threads=3, **kw)
    _assert_same_store(d / f"ws_blocks_{mode}.zarr", d / f"ws_blocks_{mode}_3.zarr")
    if mode == "points":  # every marker, read in its own block's coordinates, seeds one nucleus
        assert abs(int(blocked.max()) - len(cy)) <= 0.02 * len(cy)


def test_an_object_larger_than_the_halo_is_counted_not_hidden(tmp_path, caplog):
    import logging

    img = np.full((1, 256, 256), 100, np.uint16)
    img[0, 40:200, 30:220] = 1000  # 160 x 190 px: more than a 128 block plus 16 px of halo can hold
    img[0, 10:20, 240:250] = 1000
    write_well_image(tmp_path / "image.zarr", {1: img}, ["DNA"], 64, 1.0)
    with caplog.at_level(logging.WARNING, logger="plateseg.pipeline.labelling"):
        classical_well(tmp_path / "image.zarr", tmp_path / "labels.zarr", 0, {"threshold": "otsu", "min_area": 20},
                       tile_size=64, block_size=128, halo=16)
    stats = _block_stats(tmp_path / "labels.zarr")
    assert stats["cut_by_halo"] >= 1 and "larger than the halo" in caplog.text and "block_halo" in caplog.text


def test_cells_grown_block_by_block_are_the_whole_fields(tmp_path):
    """Cells keep their nucleus's label, so each pixel is computed in the window of its block's core; with the
    whole field's stain levels and enough context the cells are the whole field's (issue 14: tiled like the nuclei)."""
    from plateseg.io.ngff import write_well_labels
    from plateseg.io.synth import cell_channel
    from plateseg.pipeline.cells import cells_well

    image, nuclei = synth_field(3, shape=(384, 384), density=3.0)
    stain, truth = cell_channel(nuclei, np.random.default_rng(103))
    write_well_image(tmp_path / "image.zarr", {1: np.concatenate([image, stain[None]])}, ["DNA", "Marker", "Cyto"],
                     64, 1.0)
    write_well_labels(tmp_path / "nuclei.zarr", {1: nuclei}, tile_size=64)
    settings = {"sigma": 0.5, "threshold": "li", "elevation": "ridge", "regularization": 0.01, "max_distance": 30.0}
    for name, blocks in (("whole", {}), ("blocks", {"block_size": BLOCK, "halo": HALO}),
                         ("blocks_3", {"block_size": BLOCK, "halo": HALO, "threads": 3})):
        cells_well(tmp_path / "image.zarr", tmp_path / "nuclei.zarr", tmp_path / f"cells_{name}.zarr",
                   tmp_path / f"cyto_{name}.zarr", 2, settings, tile_size=64, **blocks)
    whole, blocked = read_labels(tmp_path / "cells_whole.zarr", 1), read_labels(tmp_path / "cells_blocks.zarr", 1)
    assert len(np.unique(whole)) > 50 and set(np.unique(blocked)) == set(np.unique(whole))
    assert (whole != blocked).mean() < 1e-4  # the same cells, pixel for pixel but a few ties
    agreement = label_agreement(whole, blocked)
    assert agreement["matched_fraction"] >= 0.995 and agreement["split"] == 0 and agreement["extra"] == 0
    # cytoplasm = cell minus nucleus, block by block too
    cyto = read_labels(tmp_path / "cyto_blocks.zarr", 1)
    assert np.array_equal(cyto, np.where(nuclei > 0, 0, blocked))
    _assert_same_store(tmp_path / "cells_blocks.zarr", tmp_path / "cells_blocks_3.zarr")
    _assert_same_store(tmp_path / "cyto_blocks.zarr", tmp_path / "cyto_blocks_3.zarr")


def test_measurement_block_by_block_gives_the_whole_fields_rows(field):
    """Each nucleus is measured whole in its block's window: the table equals the whole field's."""
    from plateseg.io.ngff import write_well_labels
    from plateseg.measure.objects import measure_well

    d, _, truth = field
    write_well_labels(d / "truth.zarr", {1: truth}, tile_size=64)
    whole = measure_well(d / "image.zarr", d / "truth.zarr", {"Metadata_Well": "A01"})
    blocks = measure_well(d / "image.zarr", d / "truth.zarr", {"Metadata_Well": "A01"}, block_size=BLOCK)
    assert len(whole) == int(truth.max()) > 100
    pd.testing.assert_frame_equal(whole, blocks, check_exact=False, rtol=1e-9)
    parallel = measure_well(d / "image.zarr", d / "truth.zarr", {"Metadata_Well": "A01"}, block_size=BLOCK, threads=3)
    pd.testing.assert_frame_equal(blocks, parallel, check_exact=True)


def test_the_ensemble_picked_block_by_block_is_the_whole_fields(field):
    """Rule pick on a field larger than a block: the picker's field-level features come from the whole field and
    each kept nucleus is owned by one block, so the ensemble equals the whole field's."""
    from plateseg.ensemble.features import field_candidates
    from plateseg.ensemble.picker import train_picker
    from plateseg.io.files import read_table
    from plateseg.io.ngff import write_well_labels
    from plateseg.pipeline.pick import pick_well
    from plateseg.segment.classical import segment_classical
    from plateseg.segment.watershed import instances_from_maps

    d, image, truth = field
    maps = _maps_of(truth)
    engines = {"unet": instances_from_maps(maps, mode="centre", fg_threshold=0.5, peak_min_distance=4, min_area=10),
               "maskrcnn": segment_classical(image[0], sigma=1.0, threshold="otsu", min_distance=5, min_area=20)}
    scores = {"maskrcnn": {int(k): 0.9 for k in np.unique(engines["maskrcnn"]) if k}}
    picker = train_picker(field_candidates(engines, maps, scores, truth=truth),
                          params={"n_boosters": 1, "num_boost_round": 30})
    picker.save(d / "picker.json")
    write_well_image(d / "pick_maps.zarr", {1: maps}, ["fg", "boundary", "centre"], 64, 1.0)
    for name, lab in engines.items():
        write_well_labels(d / f"{name}.zarr", {1: lab}, tile_size=64)
    pd.DataFrame({"field": 1, "label": list(scores["maskrcnn"]), "score": 0.9}).to_parquet(d / "maskrcnn.parquet")
    for mode, blocks in (("whole", {}), ("blocks", {"block_size": BLOCK, "halo": HALO}),
                         ("blocks_3", {"block_size": BLOCK, "halo": HALO, "threads": 3})):
        pick_well(d / "pick_maps.zarr", d / "unet.zarr", d / "maskrcnn.zarr", d / "maskrcnn.parquet", d / "picker.json",
                  d / f"ensemble_{mode}.zarr", d / f"picks_{mode}.parquet", min_iou=0.3, nms_iou=0.3, tile_size=64,
                  **blocks)
    whole, blocked = read_labels(d / "ensemble_whole.zarr", 1), read_labels(d / "ensemble_blocks.zarr", 1)
    _assert_agrees(whole, blocked)
    # the ensemble's store records its blocks like the other blockwise label stores (the per-well seam QC)
    stats = _block_stats(d / "ensemble_blocks.zarr")
    assert stats["blocks"] == 16 and stats["objects"] == int(blocked.max()) and stats["on_seams"] > 20
    assert _block_stats(d / "ensemble_whole.zarr") == {"objects": int(whole.max()), "blocks": 1, "on_seams": 0,
                                                       "cut_by_halo": 0}
    _assert_same_store(d / "ensemble_blocks.zarr", d / "ensemble_blocks_3.zarr")
    pd.testing.assert_frame_equal(read_table(d / "picks_blocks.parquet"), read_table(d / "picks_blocks_3.parquet"),
                                  check_exact=True)
    picks = {m: read_table(d / f"picks_{m}.parquet") for m in ("whole", "blocks")}
    assert sorted(picks["blocks"]["label"]) == list(range(1, int(blocked.max()) + 1))  # a row per kept nucleus
    assert 0 < (picks["whole"]["engine"] == "unet").sum() < len(picks["whole"])  # both engines contribute
    for m in picks:  # each row names the candidate its mask came from
        p = picks[m].iloc[0]
        lab = read_labels(d / f"ensemble_{m}.zarr", 1) == p["label"]
        assert (engines[p["engine"]][lab] == p["source_label"]).mean() > 0.95
    assert abs((picks["blocks"]["engine"] == "unet").sum() - (picks["whole"]["engine"] == "unet").sum()) <= 2
