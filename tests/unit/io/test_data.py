"""Tests of airmlops_core.io.data: local files and a real S3 server; hashes, atomic writes, URIs."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from airmlops_core.errors import DataError
from airmlops_core.io import data
from airmlops_core.io.data import DataRef


def _sha(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def frame() -> pd.DataFrame:
    """Mixed dtypes, including missing values, as pandas 3 builds them."""
    return pd.DataFrame(
        {
            "id": np.arange(8, dtype="int64"),
            "x": [0.5, 1.5, np.nan, 3.25, 4.0, 5.0, 6.5, 7.0],
            "city": ["Oslo", "Lima", None, "Pune", "Oslo", "Lima", "Pune", "Oslo"],
            "day": pd.date_range("2024-01-01", periods=8, freq="D"),
            "flag": [True, False, True, False, True, False, True, False],
            "grade": pd.Categorical(list("abcabcab")),
        }
    )


def _write_local_script(out: Path) -> str:
    return textwrap.dedent(
        f"""
        import numpy as np, pandas as pd
        from airmlops_core.io.data import write_frame
        df = pd.DataFrame({{
            "id": np.arange(8, dtype="int64"),
            "x": [0.5, 1.5, np.nan, 3.25, 4.0, 5.0, 6.5, 7.0],
            "city": ["Oslo", "Lima", None, "Pune", "Oslo", "Lima", "Pune", "Oslo"],
            "day": pd.date_range("2024-01-01", periods=8, freq="D"),
            "flag": [True, False, True, False, True, False, True, False],
            "grade": pd.Categorical(list("abcabcab")),
        }})
        print(write_frame(df, {str(out)!r}).sha256)
        """
    )


# ------------------------------------------------------------------------------------------
# Round trips, hashes, determinism


def test_parquet_round_trip_keeps_values_and_dtypes(tmp_path: Path, frame: pd.DataFrame) -> None:
    ref = data.write_frame(frame, str(tmp_path / "t.parquet"))
    assert ref == DataRef(
        uri=str(tmp_path / "t.parquet"),
        sha256=_sha(tmp_path / "t.parquet"),
        rows=8,
        format="parquet",
    )
    back = data.read_frame(ref.uri)
    pd.testing.assert_frame_equal(back, frame)
    assert str(back["city"].dtype) == "str"
    assert back["day"].dtype == "datetime64[us]"


def test_csv_round_trip(tmp_path: Path, frame: pd.DataFrame) -> None:
    ref = data.write_frame(frame, str(tmp_path / "t.csv"), format="csv")
    assert ref.format == "csv"
    assert ref.sha256 == _sha(ref.uri)
    text = Path(ref.uri).read_text()
    assert text.splitlines()[0] == "id,x,city,day,flag,grade"
    assert "\r" not in text
    back = data.read_frame(ref.uri)
    # CSV is untyped: dates and categories come back as text.
    expected = frame.assign(
        day=frame["day"].dt.strftime("%Y-%m-%d"), grade=frame["grade"].astype("str")
    )
    pd.testing.assert_frame_equal(back, expected)


def test_read_frame_selects_columns_in_requested_order(tmp_path: Path, frame: pd.DataFrame) -> None:
    for name, fmt in (("t.parquet", "parquet"), ("t.csv", "csv")):
        ref = data.write_frame(frame, str(tmp_path / name), format=fmt)
        back = data.read_frame(ref.uri, columns=["x", "id", "x"])
        assert list(back.columns) == ["x", "id"]
        assert back["id"].tolist() == list(range(8))


@pytest.mark.parametrize(("name", "fmt"), [("a.parquet", "parquet"), ("a.csv", "csv")])
def test_same_frame_gives_byte_identical_files(
    tmp_path: Path, frame: pd.DataFrame, name: str, fmt: str
) -> None:
    first = data.write_frame(frame, str(tmp_path / "one" / name), format=fmt)
    second = data.write_frame(frame.copy(), str(tmp_path / "two" / name), format=fmt)
    again = data.write_frame(frame, first.uri, format=fmt)  # overwrite in place
    assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    assert first.sha256 == second.sha256 == again.sha256


def test_bytes_identical_across_interpreters(tmp_path: Path, frame: pd.DataFrame) -> None:
    """A fresh interpreter (other hash seed, other object ids) writes the same bytes."""
    here = data.write_frame(frame, str(tmp_path / "here.parquet"))
    out = tmp_path / "there.parquet"
    proc = subprocess.run(
        [sys.executable, "-c", _write_local_script(out)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    )
    assert proc.stdout.strip() == here.sha256 == _sha(out)


def test_index_is_not_written(tmp_path: Path, frame: pd.DataFrame) -> None:
    subset = frame[frame["flag"]]  # index 0, 2, 4, 6
    ref = data.write_frame(subset, str(tmp_path / "s.parquet"))
    back = data.read_frame(ref.uri)
    assert list(back.columns) == list(frame.columns)
    assert back.index.equals(pd.RangeIndex(4))
    assert back["id"].tolist() == [0, 2, 4, 6]
    same = data.write_frame(subset.reset_index(drop=True), str(tmp_path / "r.parquet"))
    assert same.sha256 == ref.sha256


def test_file_sha256_matches_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "blob.bin"
    payload = os.urandom(3 * 1024 * 1024 + 17)  # several read chunks
    path.write_bytes(payload)
    assert data.file_sha256(str(path)) == hashlib.sha256(payload).hexdigest()
    assert data.file_sha256(path.as_uri()) == hashlib.sha256(payload).hexdigest()


def test_file_uri_is_accepted_and_normalised(tmp_path: Path, frame: pd.DataFrame) -> None:
    ref = data.write_frame(frame, (tmp_path / "sub dir" / "f.parquet").as_uri())
    assert ref.uri == str(tmp_path / "sub dir" / "f.parquet")
    pd.testing.assert_frame_equal(data.read_frame(ref.uri), frame)


# ------------------------------------------------------------------------------------------
# read_ref verification


def test_read_ref_returns_verified_data(tmp_path: Path, frame: pd.DataFrame) -> None:
    ref = data.write_frame(frame, str(tmp_path / "r.parquet"))
    pd.testing.assert_frame_equal(data.read_ref(ref, columns=["id"]), frame[["id"]])


def test_read_ref_detects_rewritten_file(tmp_path: Path, frame: pd.DataFrame) -> None:
    ref = data.write_frame(frame, str(tmp_path / "r.parquet"))
    data.write_frame(frame.head(7), ref.uri)  # a valid file, but not the one referenced
    with pytest.raises(DataError, match="content changed since it was written") as info:
        data.read_ref(ref)
    msg = str(info.value)
    assert ref.uri in msg
    assert f"expected sha256 {ref.sha256}, found {_sha(ref.uri)}" in msg


def test_read_ref_detects_one_flipped_byte(tmp_path: Path, frame: pd.DataFrame) -> None:
    ref = data.write_frame(frame, str(tmp_path / "r.csv"), format="csv")
    raw = bytearray(Path(ref.uri).read_bytes())
    raw[-3] ^= 0x01
    Path(ref.uri).write_bytes(bytes(raw))
    with pytest.raises(DataError, match="content changed"):
        data.read_ref(ref)


def test_read_ref_missing_file(tmp_path: Path) -> None:
    ref = DataRef(uri=str(tmp_path / "gone.parquet"), sha256="0" * 64, rows=1, format="parquet")
    with pytest.raises(DataError, match="file not found") as info:
        data.read_ref(ref)
    assert ref.uri in str(info.value)


def test_dataref_dict_round_trip_through_json(tmp_path: Path, frame: pd.DataFrame) -> None:
    ref = data.write_frame(frame, str(tmp_path / "r.parquet"))
    assert DataRef.from_dict(json.loads(json.dumps(ref.to_dict()))) == ref
    assert DataRef.from_dict({**ref.to_dict(), "extra": 1}) == ref


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"sha256": None}, "missing keys"),
        ({"sha256": "abc"}, "not 64 hex digits"),
        ({"format": "xlsx"}, "format 'xlsx'"),
        ({"rows": -1}, "not a count"),
        ({"rows": "7"}, "not a count"),
    ],
)
def test_dataref_from_dict_rejects_bad_input(patch: dict, message: str) -> None:
    d = {"uri": "/x.parquet", "sha256": "a" * 64, "rows": 3, "format": "parquet"}
    d.update(patch)
    d = {k: v for k, v in d.items() if v is not None}
    with pytest.raises(DataError, match=message):
        DataRef.from_dict(d)


# ------------------------------------------------------------------------------------------
# Failures while reading


def test_missing_file_names_it(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope" / "x.parquet")
    for call in (lambda: data.read_frame(missing), lambda: data.file_sha256(missing)):
        with pytest.raises(DataError, match="file not found") as info:
            call()
        assert missing in str(info.value)


@pytest.mark.parametrize("keep", [0.0, 0.3, 0.6, 0.95, "all-but-one"])
def test_truncated_parquet_is_a_data_error(
    tmp_path: Path, frame: pd.DataFrame, keep: float | str
) -> None:
    path = tmp_path / "t.parquet"
    big = pd.concat([frame] * 200, ignore_index=True)
    data.write_frame(big, str(path))
    raw = path.read_bytes()
    cut = len(raw) - 1 if keep == "all-but-one" else int(len(raw) * float(keep))
    path.write_bytes(raw[:cut])
    with pytest.raises(DataError, match="not a readable Parquet file: ") as info:
        data.read_frame(str(path))
    assert str(path) in str(info.value)


def test_csv_read_as_parquet_is_a_data_error(tmp_path: Path, frame: pd.DataFrame) -> None:
    ref = data.write_frame(frame, str(tmp_path / "t.csv"), format="csv")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        data.read_frame(ref.uri, format="parquet")


def test_empty_csv_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(DataError, match="empty CSV") as info:
        data.read_frame(str(path))
    assert str(path) in str(info.value)


@pytest.mark.parametrize(("name", "fmt"), [("t.parquet", "parquet"), ("t.csv", "csv")])
def test_missing_columns_lists_missing_and_available(
    tmp_path: Path, frame: pd.DataFrame, name: str, fmt: str
) -> None:
    ref = data.write_frame(frame, str(tmp_path / name), format=fmt)
    with pytest.raises(DataError) as info:
        data.read_frame(ref.uri, columns=["id", "income", "age"])
    msg = str(info.value)
    assert ref.uri in msg
    assert "missing columns ['income', 'age']" in msg
    assert "available columns: ['id', 'x', 'city', 'day', 'flag', 'grade']" in msg


def test_csv_with_wrong_delimiter_reports_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / "semi.csv"
    path.write_text("id;age;churn\n1;30;0\n2;41;1\n")
    with pytest.raises(DataError, match=r"missing columns \['id', 'age'\]") as info:
        data.read_frame(str(path), columns=["id", "age"])
    msg = str(info.value)
    assert "available columns: ['id;age;churn']" in msg
    assert "is the delimiter wrong?" in msg


def test_format_comes_from_extension_or_argument(tmp_path: Path, frame: pd.DataFrame) -> None:
    odd = tmp_path / "table.dat"
    data.write_frame(frame, str(odd), format="parquet")
    with pytest.raises(DataError, match="cannot tell the format"):
        data.read_frame(str(odd))
    pd.testing.assert_frame_equal(data.read_frame(str(odd), format="parquet"), frame)
    pq_ext = data.write_frame(frame, str(tmp_path / "t.pq"))
    assert data.read_frame(pq_ext.uri).shape == (8, 6)
    with pytest.raises(DataError, match="unknown format 'json'"):
        data.read_frame(pq_ext.uri, format="json")


def test_write_refuses_format_contradicting_extension(tmp_path: Path, frame: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="the extension says csv but format='parquet'"):
        data.write_frame(frame, str(tmp_path / "t.csv"))
    assert os.listdir(tmp_path) == []


def test_relative_and_unsupported_uris_are_rejected(frame: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="relative path"):
        data.read_frame("data/x.parquet")
    with pytest.raises(DataError, match="unsupported URI scheme 'gs'"):
        data.read_frame("gs://b/x.parquet")
    with pytest.raises(DataError, match="unsupported URI scheme 'http'"):
        data.write_frame(frame, "http://host/x.parquet")


def test_s3_uri_without_client_asks_for_one(frame: pd.DataFrame) -> None:
    for call in (
        lambda: data.read_frame("s3://bucket/x.parquet"),
        lambda: data.write_frame(frame, "s3://bucket/x.parquet"),
        lambda: data.file_sha256("s3://bucket/x.parquet"),
    ):
        with pytest.raises(DataError, match="S3 client is needed") as info:
            call()
        assert "s3://bucket/x.parquet" in str(info.value)


# ------------------------------------------------------------------------------------------
# Atomic writes


def test_write_creates_dirs_and_leaves_no_temp_file(tmp_path: Path, frame: pd.DataFrame) -> None:
    dest = tmp_path / "a" / "b" / "c.parquet"
    data.write_frame(frame, str(dest))
    data.write_frame(frame.head(3), str(dest))
    assert sorted(os.listdir(dest.parent)) == ["c.parquet"]
    assert data.read_frame(str(dest)).shape == (3, 6)


def test_written_file_mode_follows_umask(tmp_path: Path, frame: pd.DataFrame) -> None:
    old = os.umask(0o022)
    try:
        ref = data.write_frame(frame, str(tmp_path / "m.parquet"))
    finally:
        os.umask(old)
    assert os.stat(ref.uri).st_mode & 0o777 == 0o644  # not mkstemp's 0o600


def test_failing_writer_keeps_previous_file(
    tmp_path: Path, frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow.parquet as pq

    dest = tmp_path / "out.parquet"
    before = data.write_frame(frame, str(dest))
    seen: dict[str, object] = {}

    def half_writer(table, where, **kwargs):
        where.write(b"PAR1" + b"\0" * 4096)  # some bytes of a new file, then the crash
        where.flush()
        seen["dir"] = sorted(os.listdir(tmp_path))
        seen["dest"] = dest.read_bytes()
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(pq, "write_table", half_writer)
    with pytest.raises(RuntimeError, match="disk on fire"):
        data.write_frame(frame.head(2), str(dest))

    # While writing, the bytes went to a temp file next to the destination...
    temp_names = [n for n in seen["dir"] if n != "out.parquet"]  # type: ignore[union-attr]
    assert len(temp_names) == 1
    assert temp_names[0].startswith(".out.parquet.")
    assert temp_names[0].endswith(".tmp")
    assert seen["dest"] == Path(before.uri).read_bytes()
    # ...and afterwards the temp file is gone and the destination is untouched.
    assert os.listdir(tmp_path) == ["out.parquet"]
    assert _sha(dest) == before.sha256
    pd.testing.assert_frame_equal(data.read_ref(before), frame)


def test_failing_fsync_keeps_previous_file(
    tmp_path: Path, frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "out.csv"
    before = data.write_frame(frame, str(dest), format="csv")

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(DataError, match="cannot write: .*Input/output error") as info:
        data.write_frame(frame.head(1), str(dest), format="csv")
    assert str(dest) in str(info.value)
    assert os.listdir(tmp_path) == ["out.csv"]
    assert _sha(dest) == before.sha256


def test_unserialisable_frame_is_a_data_error(tmp_path: Path) -> None:
    bad = pd.DataFrame({"mixed": pd.Series([1, "two", 3.0], dtype=object)})
    dest = tmp_path / "bad.parquet"
    with pytest.raises(DataError, match="cannot write the frame as parquet") as info:
        data.write_frame(bad, str(dest))
    assert str(dest) in str(info.value)
    assert os.listdir(tmp_path) == []


def test_write_into_a_file_as_directory_is_a_data_error(
    tmp_path: Path, frame: pd.DataFrame
) -> None:
    (tmp_path / "plain").write_text("x")
    with pytest.raises(DataError, match="cannot create directory"):
        data.write_frame(frame, str(tmp_path / "plain" / "f.parquet"))
    (tmp_path / "dir.parquet").mkdir()
    with pytest.raises(DataError, match="is a directory"):
        data.write_frame(frame, str(tmp_path / "dir.parquet"))


# ------------------------------------------------------------------------------------------
# URIs


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("data/x.csv", "/base/data/x.csv"),
        ("./data/../y.csv", "/base/y.csv"),
        ("/abs/x.parquet", "/abs/x.parquet"),
        ("/abs//a/./b/../x.parquet", "/abs/a/x.parquet"),
        ("file:///abs/x.parquet", "/abs/x.parquet"),
        ("file://localhost/abs/my%20x.parquet", "/abs/my x.parquet"),
        ("s3://bucket/key/x.parquet", "s3://bucket/key/x.parquet"),
        ("  s3://bucket/x.csv ", "s3://bucket/x.csv"),
    ],
)
def test_resolve_uri(uri: str, expected: str) -> None:
    assert data.resolve_uri(uri, "/base") == expected


@pytest.mark.parametrize("uri", ["", "s3:///key", "gs://b/k", "file://otherhost/x"])
def test_resolve_uri_rejects(uri: str) -> None:
    with pytest.raises(DataError):
        data.resolve_uri(uri, "/base")


@pytest.mark.parametrize(
    ("base", "parts", "expected"),
    [
        ("s3://b/work", ("run1", "train.parquet"), "s3://b/work/run1/train.parquet"),
        ("s3://b/work/", ("/run1/", "train.parquet"), "s3://b/work/run1/train.parquet"),
        ("s3://b", ("x.csv",), "s3://b/x.csv"),
        ("/tmp/work", ("run1", "/train.parquet"), "/tmp/work/run1/train.parquet"),
        ("/tmp/work/", ("", "a"), "/tmp/work/a"),
        ("file:///tmp/work", ("a",), "/tmp/work/a"),
    ],
)
def test_join_uri(base: str, parts: tuple[str, ...], expected: str) -> None:
    assert data.join_uri(base, *parts) == expected


# ------------------------------------------------------------------------------------------
# S3 (a real SeaweedFS server started by the session)


@pytest.mark.integration
@pytest.mark.parametrize(("name", "fmt"), [("t.parquet", "parquet"), ("t.csv", "csv")])
def test_s3_round_trip_and_hash(
    s3, s3_prefix: str, tmp_path: Path, frame: pd.DataFrame, name: str, fmt: str
) -> None:
    uri = data.join_uri(s3_prefix, name)
    ref = data.write_frame(frame, uri, format=fmt, s3_client=s3.client)
    assert ref.uri == uri
    bucket, key = uri[len("s3://") :].split("/", 1)
    stored = s3.client.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert hashlib.sha256(stored).hexdigest() == ref.sha256
    assert data.file_sha256(uri, s3_client=s3.client) == ref.sha256
    local = data.write_frame(frame, str(tmp_path / name), format=fmt)
    assert local.sha256 == ref.sha256  # same bytes wherever they are written
    back = data.read_ref(ref, s3_client=s3.client)
    pd.testing.assert_frame_equal(back, data.read_frame(local.uri))
    assert data.read_frame(uri, columns=["id"], s3_client=s3.client)["id"].tolist() == list(
        range(8)
    )


@pytest.mark.integration
def test_s3_read_ref_detects_replaced_object(s3, s3_prefix: str, frame: pd.DataFrame) -> None:
    uri = data.join_uri(s3_prefix, "r.parquet")
    ref = data.write_frame(frame, uri, s3_client=s3.client)
    data.write_frame(frame.tail(2), uri, s3_client=s3.client)
    with pytest.raises(DataError, match="content changed since it was written") as info:
        data.read_ref(ref, s3_client=s3.client)
    assert uri in str(info.value)


@pytest.mark.integration
def test_s3_missing_object_and_bucket(s3, s3_prefix: str) -> None:
    missing = data.join_uri(s3_prefix, "absent.parquet")
    with pytest.raises(DataError, match="file not found") as info:
        data.read_frame(missing, s3_client=s3.client)
    assert missing in str(info.value)
    with pytest.raises(DataError, match="file not found"):
        data.file_sha256(missing, s3_client=s3.client)
    with pytest.raises(DataError, match="bucket does not exist"):
        data.read_frame("s3://no-such-bucket-airmlops/x.parquet", s3_client=s3.client)


@pytest.mark.integration
def test_s3_truncated_parquet(s3, s3_prefix: str, frame: pd.DataFrame) -> None:
    uri = data.join_uri(s3_prefix, "cut.parquet")
    ref = data.write_frame(frame, uri, s3_client=s3.client)
    bucket, key = uri[len("s3://") :].split("/", 1)
    whole = s3.client.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3.client.put_object(Bucket=bucket, Key=key, Body=whole[: len(whole) // 2])
    with pytest.raises(DataError, match="not a readable Parquet file") as info:
        data.read_frame(uri, s3_client=s3.client)
    assert uri in str(info.value)
    with pytest.raises(DataError, match="content changed"):
        data.read_ref(ref, s3_client=s3.client)


@pytest.mark.integration
def test_s3_server_requires_credentials(s3) -> None:
    import boto3
    from botocore.exceptions import ClientError

    intruder = boto3.client(
        "s3",
        endpoint_url=s3.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="intruder",
        aws_secret_access_key="wrong",
    )
    with pytest.raises(ClientError, match="InvalidAccessKeyId"):
        intruder.list_objects_v2(Bucket=s3.bucket)
    with pytest.raises(DataError, match="S3 error InvalidAccessKeyId"):
        data.read_frame(f"s3://{s3.bucket}/x.parquet", s3_client=intruder)
