"""Write the real-image demo plate ``demo/dsb2018-fluo`` (the embedded default config's input).

Fields are DSB2018 fluorescence images (CC0) of the shipped set's **kept-out fold** (the ``kept_out_ids`` of
``models/dsb2018-fluo/unet.pt``: no file of the set was trained or tuned on them, so the demo's evaluation scores
it honestly), 256x256, chosen evenly
over that fold's nucleus counts and laid out so that density rises across the columns (the fields of a well
are neighbours in that order). Channel 1 is the real DNA image (uint8 values as uint16), channel 2 a
synthetic marker (:func:`plateseg.io.synth.marker_channel`) whose level rises down the rows. Ground truth:
the images' DSB2018 masks. File names follow the CellProfiler scheme::

    demo/dsb2018-fluo/images/DSB_<well>_s<field>_w<channel>.tif
    demo/dsb2018-fluo/groundtruth/DSB_<well>_s<field>_labels.tif
    demo/dsb2018-fluo/fields.csv       (well, field, DSB2018 image id, number of nuclei)

Run from the repository root (seeded; the same data give the same files)::

    .venv/bin/python bench/make_demo_plate.py
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.environ.get("PLATESEG_DSB2018") or str(REPO.parent / "shared" / "data" / "dsb2018" / "fluo"))
    ap.add_argument("--set-dir", default=str(REPO / "models" / "dsb2018-fluo"),
                    help="the shipped set whose kept-out images are used (its checkpoints list them)")
    ap.add_argument("--out", default=str(REPO / "demo" / "dsb2018-fluo"))
    ap.add_argument("--rows", default="AB")
    ap.add_argument("--columns", type=int, default=3)
    ap.add_argument("--fields", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import numpy as np
    import pandas as pd
    import tifffile

    from plateseg.io.annotated import load_annotated
    from plateseg.io.files import atomic_path
    from plateseg.io.synth import marker_channel

    import torch

    data = Path(args.data)
    index = pd.read_csv(data / "index.csv")
    # the kept-out images as the set's checkpoints list them (what bench/train_shipped.py held out)
    kept_ids = set(torch.load(Path(args.set_dir) / "unet.pt", map_location="cpu", weights_only=True)["kept_out_ids"])
    kept = index[index["id"].isin(kept_ids)]
    kept = kept[(kept["height"] == 256) & (kept["width"] == 256)].sort_values(["n_objects", "id"])
    n_wells = len(args.rows) * args.columns
    n = n_wells * args.fields
    picks = kept.iloc[np.round(np.linspace(0, len(kept) - 1, n)).astype(int)].reset_index(drop=True)
    items = {it[0]: it for it in load_annotated(data, channels="gray")[0] if it[0] in set(picks["id"])}
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    with atomic_path(out) as tmp:
        (tmp / "images").mkdir(parents=True)
        (tmp / "groundtruth").mkdir()
        rows = []
        # well k (density order) -> column k // rows, row k % rows: density rises across the columns
        for k in range(n_wells):
            row, column = args.rows[k % len(args.rows)], k // len(args.rows) + 1
            level = 1.0 + 2.0 * (args.rows.index(row) / max(1, len(args.rows) - 1))
            for f in range(args.fields):
                pick = picks.iloc[k * args.fields + f]
                image_id, image, truth = items[pick["id"]]
                stem = f"DSB_{row}{column:02d}_s{f + 1}"
                tifffile.imwrite(tmp / "images" / f"{stem}_w1.tif", np.asarray(image[0]).astype(np.uint16),
                                 photometric="minisblack", compression="zlib")
                tifffile.imwrite(tmp / "images" / f"{stem}_w2.tif", marker_channel(truth, level, rng),
                                 photometric="minisblack", compression="zlib")
                tifffile.imwrite(tmp / "groundtruth" / f"{stem}_labels.tif", np.asarray(truth).astype(np.uint16),
                                 photometric="minisblack", compression="zlib")
                rows.append({"well": f"{row}{column:02d}", "field": f + 1, "image_id": image_id,
                             "n_nuclei": int(pick["n_objects"]), "marker_level": level})
        pd.DataFrame(rows).sort_values(["well", "field"]).to_csv(tmp / "fields.csv", index=False)
    print(f"wrote {out}: {n_wells} wells x {args.fields} fields")


if __name__ == "__main__":
    main()
