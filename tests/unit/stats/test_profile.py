"""Tests of airmlops_core.stats.profile: quantile bins, the compact serialised profile, its
validation, and the empty window it describes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from airmlops_core.errors import ProfileError
from airmlops_core.stats.drift import check_drift
from airmlops_core.stats.profile import (
    PROFILE_ARTIFACT,
    NumericProfile,
    ReferenceProfile,
    build_reference,
)


def test_quantile_edges_match_numpy_inverted_cdf() -> None:
    rng = np.random.default_rng(8)
    for n in [10, 11, 999, 12_345]:
        x = rng.normal(size=n)
        prof = build_reference(pd.DataFrame({"x": x}), numeric=["x"], sample_rows=50)
        expected = np.unique(np.quantile(x, np.arange(1, 10) / 10, method="inverted_cdf"))
        assert np.array_equal(prof.columns["x"].edges, expected)
        assert (
            prof.columns["x"].bin_counts.tolist()
            == np.bincount(
                np.searchsorted(expected, x, side="left"), minlength=expected.size + 1
            ).tolist()
        )


def test_profile_roundtrip_is_compact_and_exact(mixed_frame, tmp_path: Path) -> None:
    rng = np.random.default_rng(15)
    ref = mixed_frame(rng, 200_000)
    prof = build_reference(
        ref,
        numeric=["num", "pois"],
        categorical=["cat"],
        sample_rows=10_000,
        description="train v3",
    )
    blob = prof.to_bytes()
    assert len(blob) < 250_000  # two 10k samples + counts, not 200k rows x 3 columns
    back = ReferenceProfile.from_bytes(blob)
    assert back.description == "train v3"
    assert list(back.columns) == ["num", "pois", "cat"]
    cur = mixed_frame(rng, 30_000, shift=0.2)
    assert check_drift(back, cur).to_dict() == check_drift(prof, cur).to_dict()
    path = prof.save(tmp_path / PROFILE_ARTIFACT)
    assert ReferenceProfile.load(path).to_bytes() == blob
    stored = back.columns["num"]
    assert isinstance(stored, NumericProfile)
    assert stored.n_missing == int(ref.num.isna().sum())
    assert np.isin(stored.sample, ref.num.to_numpy()).all()  # real reference values, float64


def test_profile_errors_name_the_problem(tmp_path: Path) -> None:
    df = pd.DataFrame({"x": [1.0, 2.0], "s": ["a", "b"]})
    with pytest.raises(ProfileError, match=r"lacks the columns \['nope'\]"):
        build_reference(df, numeric=["x", "nope"])
    with pytest.raises(ProfileError, match="column 's' must be numeric"):
        build_reference(df, numeric=["s"])
    with pytest.raises(ProfileError, match=r"listed twice: \['x'\]"):
        build_reference(df, numeric=["x"], categorical=["x"])
    with pytest.raises(ProfileError, match="not a drift reference profile"):
        ReferenceProfile.from_bytes(b"garbage", source="s3://b/ref.zip")
    prof = build_reference(df, numeric=["x"], categorical=["s"])
    with pytest.raises(ProfileError, match="columns profiled twice"):
        prof.merge(prof)
    # a tampered profile is refused, naming the column
    import io
    import zipfile

    blob = prof.to_bytes()
    zin = zipfile.ZipFile(io.BytesIO(blob))
    meta = json.loads(zin.read("profile.json"))
    meta["columns"][1]["counts"] = [5, 5]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zout:
        for item in zin.namelist():
            data = json.dumps(meta) if item == "profile.json" else zin.read(item)
            zout.writestr(item, data)
    with pytest.raises(ProfileError, match=r"ref\.zip: column 's': category counts"):
        ReferenceProfile.from_bytes(out.getvalue(), source="ref.zip")
    with pytest.raises(ProfileError, match="cannot read"):
        ReferenceProfile.load(tmp_path / "absent.zip")


def test_an_empty_window_is_not_enough_data_not_a_dtype_error() -> None:
    rng = np.random.default_rng(11)
    ref = pd.DataFrame({"x": rng.normal(size=1000), "c": rng.choice(["a", "b"], size=1000)})
    prof = build_reference(ref, numeric=["x"], categorical=["c"])
    empty = prof.empty_frame()
    assert list(empty.columns) == ["x", "c"]
    assert len(empty) == 0
    assert str(empty["x"].dtype) == "float64"
    with pytest.raises(ValueError, match="must be numeric"):  # what a bare frame gave before
        check_drift(prof, pd.DataFrame(columns=["x", "c"]))
    assert check_drift(prof, empty).status == "not_enough_data"
