"""The model API's command line: arguments, env fallbacks and the models to serve."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from airmlops_core.serve import model_api, workers
from airmlops_core.serve.auth import TOKEN_ENV, generate_token

TOKEN = {TOKEN_ENV: generate_token()}


def test_cli_defaults_and_env_fallbacks() -> None:
    args = model_api.parse_args(
        ["--models", "a,b"],
        env={"MLFLOW_TRACKING_URI": "http://m:1", model_api.PORT_ENV: "6123", **TOKEN},
    )
    assert (args.host, args.port, args.tracking_uri) == ("127.0.0.1", 6123, "http://m:1")
    assert model_api.model_names(args) == ["a", "b"]
    args = model_api.parse_args(
        ["--tracking-uri", "http://x", "--port", "7000"], env={model_api.PORT_ENV: "6123", **TOKEN}
    )
    assert (args.port, args.tracking_uri, args.poll_interval) == (7000, "http://x", 5.0)
    assert (args.max_rows, args.max_queue, args.read_timeout) == (10_000, 32, 30.0)
    assert args.workers == workers.default_workers()
    assert (args.batch_wait_ms, args.max_batch_rows) == (2.0, 1024)
    with pytest.raises(SystemExit):
        model_api.parse_args(["--models", "a"], env=TOKEN)  # no tracking URI anywhere
    for bad in (
        ["--max-rows", "0"],
        ["--max-queue", "-1"],
        ["--read-timeout", "0"],
        ["--workers", "0"],
        ["--batch-wait-ms", "-1"],
        ["--max-batch-rows", "0"],
    ):
        with pytest.raises(SystemExit):
            model_api.parse_args(["--tracking-uri", "http://x", *bad], env=TOKEN)


def test_models_dir_serves_every_valid_spec(models_dir: Path, tmp_path: Path) -> None:
    want = sorted(p.stem for p in models_dir.glob("*.yaml"))
    assert model_api.models_from_dir(models_dir) == want
    for path in models_dir.glob("*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "broken.yaml").write_text("name: [not, valid]\n")
    assert model_api.models_from_dir(tmp_path) == want
    args = model_api.parse_args(
        ["--models-dir", str(tmp_path)], env={"MLFLOW_TRACKING_URI": "x", **TOKEN}
    )
    assert model_api.model_names(args) == want
