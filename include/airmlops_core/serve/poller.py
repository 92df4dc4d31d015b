"""The registry poller: follows each model's alias (`champion`) and swaps in verified versions.

Models come only from the registry (`models:/<name>/<version>`, downloaded by MLflow, checked
and loaded by `tracking.model_load`: the model-safety check runs on the downloaded files before
anything is deserialized); a request carries data, never a model. One background thread
polls the alias every `poll_interval` seconds. A new champion is downloaded, loaded and sent
its golden request (the serving input example logged with the model, else one row built from
the signature) through the same scoring path requests take, and its answers are checked to be
row-stable when requests are merged (batching.row_stable: else it is served unbatched); only
when that answered is the model published, by replacing one reference. A request reads that
reference once, so it is scored wholly by the old or wholly by the new version. A version
that fails keeps the old one served, is reported (log, reload-failure metric, /health
`problem`) and is retried with backoff; a version the safety check refuses is not retried
until the alias moves.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from airmlops_core.errors import UnsafeModel
from airmlops_core.serve import batching
from airmlops_core.serve.metrics import Metrics, version_number
from airmlops_core.serve.scoring import RequestError, parse_request, score, short_message
from airmlops_core.serve.state import ModelState, Served
from airmlops_core.tracking import model_load

log = logging.getLogger(__name__)

DEFAULT_ALIAS = "champion"
DEFAULT_POLL_SECONDS = 5.0
MAX_RETRY_SECONDS = 300.0


def golden_request(model_meta: Any, local_dir: Path) -> str:
    """The verification request: the logged serving input example, else a row from the signature.

    Raises:
        ValueError: the model has neither.
    """
    example = model_meta.get_serving_input(str(local_dir))
    if example:
        return str(example)
    schema = model_meta.get_input_schema()
    if schema is None or not schema.has_input_names():
        raise ValueError(
            "the model has neither a serving input example nor a column signature: "
            "no golden request can be built (log it with input_example=)"
        )
    fill = {
        "double": 0.0,
        "float": 0.0,
        "long": 0,
        "integer": 0,
        "boolean": False,
        "string": "",
        "datetime": "1970-01-01T00:00:00",
    }
    row = {}
    for col in schema.inputs:
        kind = getattr(getattr(col, "type", None), "name", "string")
        row[col.name] = fill.get(kind, "")
    return json.dumps({"dataframe_records": [row]})


class AliasPoller:
    """Follows the alias of every model in `states`, publishing verified versions into them."""

    def __init__(
        self,
        tracking_uri: str,
        states: dict[str, ModelState],
        metrics: Metrics,
        *,
        alias: str = DEFAULT_ALIAS,
        poll_interval: float = DEFAULT_POLL_SECONDS,
        cache_dir: Path | None = None,
        after_poll: Callable[[], None] | None = None,
    ):
        self.after_poll = after_poll
        self.tracking_uri = tracking_uri
        self.states = states
        self.metrics = metrics
        self.alias = alias
        self.poll_interval = poll_interval
        self._own_cache = cache_dir is None
        self.cache_dir = cache_dir or Path(tempfile.mkdtemp(prefix="airmlops-model-api-"))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: Any = None

    @property
    def client(self) -> Any:
        """The MLflow client of the registry (created on first use)."""
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(
                tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
            )
        return self._client

    def resolve(self, name: str) -> tuple[str, str] | None:
        """(version, run_id) the alias names now; None when the model or the alias is absent.

        Raises:
            MlflowException: the registry could not answer.
        """
        from mlflow.exceptions import MlflowException

        try:
            mv = self.client.get_model_version_by_alias(name, self.alias)
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
                return None
            raise
        return str(mv.version), str(mv.run_id or "")

    def load_verified(self, name: str, version: str, run_id: str) -> Served:
        """Download, load and verify one version; nothing is published here.

        Raises:
            Exception: any failure to download, load or answer the golden request.
        """
        local = self.cache_dir / name / f"v{version}-{time.monotonic_ns()}"
        local.mkdir(parents=True)
        try:
            # resolved through the poller's client, whatever the process-wide registry URI is
            path = model_load.download_version(self.client, name, version, local)
            # the model-safety check on the very files about to be loaded
            safe = model_load.load_dir(path, model_load.version_label(name, version))
            model = safe.pyfunc()
            golden = golden_request(safe.meta, path)
            candidate = Served(
                name=name,
                version=version,
                run_id=run_id,
                model=model,
                input_schema=model.metadata.get_input_schema(),
                golden=golden,
                loaded_at=time.time(),
                local_dir=local,
            )
            try:
                answer, rows = score(candidate, golden.encode(), "application/json")
            except RequestError as exc:
                raise RuntimeError(f"golden request refused: {exc.message}") from None
            predictions = json.loads(answer).get("predictions")
            if predictions is None or len(predictions) != rows or rows == 0:
                raise RuntimeError(f"golden request answered {rows} row(s) with {answer[:200]!r}")
            golden_rows, _ = parse_request(golden.encode(), None, candidate.input_schema)
            batchable = batching.row_stable(candidate, golden_rows)
            log.info(
                "%s: version %s %s",
                name,
                version,
                "batched"
                if batchable
                else "served unbatched: its answers change with the batch size",
            )
            return dataclasses.replace(candidate, batchable=batchable)
        except BaseException:
            shutil.rmtree(local, ignore_errors=True)
            raise

    def refresh(self, name: str) -> None:
        """Follow the alias of one model: load, verify and swap in a new target."""
        state = self.states[name]
        m = self.metrics
        now = time.time()
        try:
            target = self.resolve(name)
        except Exception as exc:
            m.poll_errors.labels(model=name).inc()
            log.warning("%s: registry poll failed: %s", name, exc)
            with state.lock:
                state.problem = f"registry poll failed: {short_message(str(exc), 300)}"
                state.last_poll = now
            return
        with state.lock:
            state.last_poll = now
        if target is None:
            m.champion_version.labels(model=name).set(0)
            served = state.served
            with state.lock:
                state.champion = None
                state.problem = f"no '{self.alias}' alias on registered model '{name}'" + (
                    f"; still serving version {served.version}"
                    if served
                    else " (model not registered or never promoted)"
                )
            return
        version, run_id = target
        m.champion_version.labels(model=name).set(version_number(version))
        with state.lock:
            state.champion = version
        if state.served is not None and state.served.version == version:
            with state.lock:
                state.problem = None
                state.failed_version, state.failures = None, 0
            return
        if state.failed_version == version and now < state.retry_at:
            return
        log.info("%s: '%s' is version %s; loading it", name, self.alias, version)
        try:
            candidate = self.load_verified(name, version, run_id)
        except Exception as exc:
            m.reloads.labels(model=name, outcome="failed").inc()
            with state.lock:
                state.failures = state.failures + 1 if state.failed_version == version else 1
                state.failed_version = version
                delay = min(self.poll_interval * 2**state.failures, MAX_RETRY_SECONDS)
                kept = (
                    f"; still serving version {state.served.version}"
                    if state.served
                    else "; nothing served"
                )
                if isinstance(exc, UnsafeModel):  # the same files fail the same check
                    state.retry_at = float("inf")
                    state.problem = (
                        f"version {version} refused by the model-safety check: "
                        f"{short_message(str(exc), 500)}{kept}; not retried until "
                        f"'{self.alias}' moves"
                    )
                else:
                    state.retry_at = time.time() + delay
                    state.problem = (
                        f"version {version} failed to load: {type(exc).__name__}: "
                        f"{short_message(str(exc), 500)}{kept}; retry in {delay:.0f}s"
                    )
            log.error("%s: %s", name, state.problem)
            return
        old = state.served
        state.served = candidate  # the swap: one reference, read once per request
        with state.lock:
            state.problem = None
            state.failed_version, state.failures = None, 0
        m.reloads.labels(model=name, outcome="success").inc()
        m.served_version.labels(model=name).set(version_number(version))
        m.loaded.labels(model=name).set(1)
        m.info.labels(model=name).info({"version": version, "run_id": run_id})
        m.last_reload.labels(model=name).set(candidate.loaded_at)
        log.info(
            "%s: now serving version %s (was %s)", name, version, old.version if old else "none"
        )
        if old is not None:
            shutil.rmtree(old.local_dir, ignore_errors=True)

    def poll_once(self) -> None:
        """Refresh every model once; one model's crash never stops the others."""
        for name in self.states:
            if self._stop.is_set():
                return
            try:
                self.refresh(name)
            except Exception:  # never let one model's bug stop the poller
                log.exception("%s: alias refresh crashed", name)
        if self.after_poll is not None:
            try:
                self.after_poll()
            except Exception:
                log.exception("after-poll hook failed")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self.poll_interval)

    def start(self) -> None:
        """Start the poller thread (its first poll loads every champion)."""
        self._thread = threading.Thread(target=self._run, name="alias-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and remove the download cache when the poller made it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._own_cache:
            shutil.rmtree(self.cache_dir, ignore_errors=True)
