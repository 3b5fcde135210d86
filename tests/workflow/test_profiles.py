"""pycytominer reads the workflow's tables as they are (issue 15): real pycytominer on a real run's output."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.workflow

import pycytominer  # noqa: E402  (a test dependency: a missing install fails, it is not skipped)


def test_pycytominer_infers_our_features_and_aggregates_to_our_profiles(trained_plate):
    from pycytominer.cyto_utils import infer_cp_features

    res = trained_plate / "work" / "results" / "DEMO"
    wells = ["A01", "A02"]
    objects = pd.concat([pd.read_parquet(res / w / "objects.parquet") for w in wells], ignore_index=True)
    ours = [c for c in objects.columns if c.startswith("Nuclei_")]
    assert len(ours) == 2 + 12 + 2 * (5 + 5)  # location, shape, and per channel (DNA, Marker) intensity and texture
    assert infer_cp_features(objects) == ours
    assert set(infer_cp_features(objects, metadata=True)) == set(objects.columns) - set(ours)

    aggregated = pycytominer.aggregate(objects, strata=["Metadata_Plate", "Metadata_Well"], features="infer",
                                       compute_object_count=True)
    profiles = pd.read_csv(res / "profiles.csv")
    assert profiles["Metadata_Well"].tolist() == wells
    assert profiles["Metadata_Object_Count"].tolist() == aggregated["Metadata_Object_Count"].tolist()
    assert profiles["Metadata_Object_Count"].tolist() == [len(pd.read_parquet(res / w / "objects.parquet")) for w in wells]
    assert [c for c in profiles.columns if not c.startswith("Metadata_")] == ours
    np.testing.assert_allclose(profiles[ours].to_numpy(float), aggregated[ours].to_numpy(float), rtol=1e-9)

    normalized = pycytominer.normalize(profiles, features="infer", meta_features="infer", samples="all",
                                       method="standardize")
    assert [c for c in normalized.columns if not c.startswith("Metadata_")] == ours
    assert set(normalized.columns) - set(ours) == {c for c in profiles.columns if c.startswith("Metadata_")}
    selected = pycytominer.feature_select(normalized, features="infer", operation=["drop_na_columns", "variance_threshold"])
    kept = [c for c in selected.columns if not c.startswith("Metadata_")]
    assert len(kept) > len(ours) / 2 and set(kept) <= set(ours)
    # what it dropped does not vary between the wells (e.g. the Euler number, 1 for every nucleus)
    dropped = set(ours) - set(kept)
    assert dropped and all(normalized[c].nunique(dropna=True) <= 1 for c in dropped), dropped
