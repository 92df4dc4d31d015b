"""store_for: the data layer's S3 settings come from one Airflow AWS connection."""

from __future__ import annotations

import json

import pytest

from airmlops.hooks.data_store import store_for


def test_store_takes_endpoint_region_and_credentials_from_the_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_OBJECTS",
        json.dumps(
            {
                "conn_type": "aws",
                "login": "AKIDEXAMPLE",
                "password": "s3cr3t-value",
                "extra": {"endpoint_url": "http://127.0.0.1:9", "region_name": "eu-west-3"},
            }
        ),
    )
    store = store_for("objects")
    assert store.s3 is not None
    assert store.s3.endpoint_url == "http://127.0.0.1:9"
    assert store.s3.region == "eu-west-3"
    assert (store.s3.access_key, store.s3.secret_key) == ("AKIDEXAMPLE", "s3cr3t-value")
    assert "s3cr3t-value" not in repr(store)
    assert store.s3_client.meta.endpoint_url == "http://127.0.0.1:9"


def test_a_local_store_reads_no_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_AWS_DEFAULT", raising=False)
    store = store_for(None, needs_s3=False)
    assert store.s3 is None
    assert store.s3_client is None
