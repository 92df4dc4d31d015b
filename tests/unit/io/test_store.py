"""The data layer: the same operations on a local directory and on a real S3 server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from airmlops_core.errors import DataError
from airmlops_core.io import data
from airmlops_core.io.store import S3Settings, Store


@pytest.fixture(params=["local", "s3"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Store, str]:
    """(store, root): a local directory, or a fresh prefix on the session's S3 server."""
    if request.param == "local":
        return Store(), str(tmp_path / "root")
    return request.getfixturevalue("s3_store"), request.getfixturevalue("s3_prefix").rstrip("/")


def test_write_read_list_exists_delete_alike(where: tuple[Store, str]) -> None:
    store, root = where
    a = data.join_uri(root, "m", "2026-01-01T00-00-00Z", "_manifest.json")
    b = data.join_uri(root, "m", "2026-01-02T00-00-00Z", "_manifest.json")
    part = data.join_uri(root, "m", "2026-01-02T00-00-00Z", "p.parquet")
    assert store.list_files(root) == []  # nothing yet: empty, not an error
    assert not store.exists(a)
    store.write_json(b, {"run": 2})
    store.write_json(a, {"run": 1, "rows": [1, 2]})
    store.write_bytes(part, b"not really parquet")
    assert store.exists(a)
    assert store.read_json(a) == {"run": 1, "rows": [1, 2]}
    assert store.read_bytes(part) == b"not really parquet"
    assert store.list_files(root, suffix="/_manifest.json") == [a, b]  # sorted: oldest first
    assert store.list_files(data.join_uri(root, "m")) == sorted([a, b, part])
    store.write_json(a, {"run": 1, "again": True})  # overwrite in place
    assert store.read_json(a) == {"again": True, "run": 1}
    store.delete(a)
    store.delete(a)  # a missing file is not an error
    assert not store.exists(a)
    assert store.list_files(root, suffix="/_manifest.json") == [b]


def test_local_writes_are_atomic_and_leave_no_temp_files(tmp_path: Path) -> None:
    store = Store()
    uri = str(tmp_path / "state" / "x.json")
    store.write_json(uri, {"v": 1})
    (tmp_path / "state" / ".x.json.abc.tmp").write_text("half-written")  # a crashed writer
    assert store.list_files(str(tmp_path / "state")) == [uri]  # temp names are never listed
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == [".x.json.abc.tmp", "x.json"]


def test_s3_errors_name_the_uri(s3_store: Store, s3: Any) -> None:
    missing_bucket = "s3://no-such-bucket-for-airmlops/scored/"
    with pytest.raises(DataError, match="no-such-bucket-for-airmlops.*bucket does not exist"):
        s3_store.list_files(missing_bucket)
    gone = f"s3://{s3.bucket}/nothing/here.json"
    with pytest.raises(DataError, match=f"{gone}: file not found"):
        s3_store.read_json(gone)
    with pytest.raises(DataError, match="S3 settings are needed"):
        Store().dataset([gone.replace(".json", ".parquet")])
    with pytest.raises(DataError, match="an S3 client is needed"):
        Store().read_bytes(gone)


def test_settings_never_show_secrets() -> None:
    store = Store(S3Settings(endpoint_url="http://127.0.0.1:1", access_key="AK", secret_key="SK"))
    assert "SK" not in repr(store)
    assert "AK" not in repr(store)
    assert "127.0.0.1:1" in repr(store)


def test_read_table_streams_only_the_asked_columns_in_file_order(
    where: tuple[Store, str], s3: Any
) -> None:
    store, root = where
    rng = np.random.default_rng(7)
    frames = [
        pd.DataFrame(
            {
                "id": np.arange(i * 1000, i * 1000 + 1000),
                "x": rng.normal(size=1000),
                "c": rng.choice(["a", "b", "c"], size=1000),
                "unused": rng.random(1000),
            }
        )
        for i in range(3)
    ]
    uris = [
        data.write_frame(f, data.join_uri(root, f"part-{i}.parquet"), s3_client=s3.client).uri
        for i, f in enumerate(frames)
    ]
    table = store.read_table(uris, ["id", "x", "c"])
    assert table.column_names == ["id", "x", "c"]
    got = table.to_pandas()
    expected = pd.concat(frames, ignore_index=True)[["id", "x", "c"]]
    assert list(got["id"]) == list(expected["id"])
    np.testing.assert_array_equal(got["x"].to_numpy(), expected["x"].to_numpy())
    assert list(got["c"]) == list(expected["c"])
    # the same statistics as an independent pandas computation over whole files
    assert got.groupby("c")["x"].mean().to_dict() == pytest.approx(
        expected.groupby("c")["x"].mean().to_dict()
    )
    with pytest.raises(DataError, match=r"missing columns \['nope'\].*available columns"):
        store.read_table(uris, ["id", "nope"])


def test_sha256_matches_the_written_ref(where: tuple[Store, str], s3: Any) -> None:
    store, root = where
    ref = data.write_frame(
        pd.DataFrame({"a": [1, 2, 3]}), data.join_uri(root, "t.parquet"), s3_client=s3.client
    )
    assert store.sha256(ref.uri) == ref.sha256
    assert json.loads(json.dumps(ref.to_dict()))["sha256"] == store.sha256(ref.uri)


def test_dataset_refuses_mixed_locations(tmp_path: Path, s3: Any) -> None:
    with pytest.raises(DataError, match="mixes local and s3"):
        Store().dataset([str(tmp_path / "a.parquet"), f"s3://{s3.bucket}/b.parquet"])
    with pytest.raises(DataError, match="no files"):
        Store().dataset([])
