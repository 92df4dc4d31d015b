"""The layout of scored outputs: deterministic paths and names."""

from __future__ import annotations

import pytest

from airmlops_core.io import scored as layout


def test_output_layout_is_deterministic() -> None:
    uri = layout.output_uri("s3://b/scored", "m", "2024-05-01T02:00:00+02:00", "p-1")
    assert uri == "s3://b/scored/m/2024-05-01T00-00-00Z/p-1.parquet"
    assert (
        layout.manifest_uri("/o", "m", "2024-05-01") == "/o/m/2024-05-01T00-00-00Z/_manifest.json"
    )
    assert layout.logical_date_iso("2024-05-01T00:00:00.250+00:00") == "2024-05-01T00:00:00.250000Z"
    assert layout.partition_name("s3://b/in/.././we ird%name.CSV") == "we_ird_name"
    with pytest.raises(ValueError, match="not an ISO 8601 date"):
        layout.output_uri("/o", "m", "yesterday", "p")
