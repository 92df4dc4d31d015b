"""Tracking-server outage campaign (issue 3, Safety and Tests).

A real MLflow server (SQLite, served artifacts) sits behind ``fault_proxy.FaultProxy``; the
steps only know the proxy's URL. Each case is one training run (train -> register) followed
by one validation run that promotes it. In one step of one case the proxy kills the server
(SIGKILL, whole process group) at a chosen request: before logging, mid artifact upload, after
the version is created but before its alias, between the evidence tags and the aliases,
between ``previous_champion`` and ``champion``, or after the last call (the answer lost). Then,
as Airflow would, the same step function is called again with the same inputs and the next
try number: once too early (the server still down: it must fail at once), then after a
restart, until it succeeds (bounded).

Invariants, checked on every state a reader could see (SQLite read after each
state-changing request the server answered, a 50 ms poller that keeps reading while the
server is down, and the API plus a model load after each restart):

- an alias only ever names a live version;
- ``challenger`` is the previous challenger or this run's version;
- (``champion``, ``previous_champion``) is (old, older), (old, old) mid-move, or
  (new, old) with the new version carrying its evidence tags: never a moved champion whose
  ``previous_champion`` is not the old champion, never a downgrade;

and after each case: exactly one live version per training run (idempotency key), no other
live version anywhere, one live MLflow run per training run, each alias loads
(``models:/name@alias``) and predicts what an independent refit of its run predicts.

Run: ``.venv/bin/pytest tests/integration/test_mlflow_outage.py -s -p no:cacheprovider``
(``-s`` prints the tally).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fault_proxy import Action, Fault, FaultProxy, KillableMlflowServer
from score_helpers import mlflow_sklearn_load

pytestmark = pytest.mark.integration

MODEL = "outage_model"
TRAIN_DAG = f"{MODEL}__train"
VALIDATE_DAG = f"{MODEL}__validate"
APPROVER = "gate (automatic)"
MAX_TRIES = 5  # the task's retries: bounded
# The MLflow client's own HTTP retry, low so that a dead server fails a call at once. One
# retry stays: it is what turns a lost answer to a POST into a twin (see the twin cases).
CLIENT_HTTP_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
API = "/api/2.0/mlflow/"
DELETED = "Deleted_Internal"  # mlflow's STAGE_DELETED_INTERNAL


@dataclass(frozen=True)
class KillPoint:
    """Where a case breaks: the faults armed for the first try of one step.

    `last`: the killed request must be the step's last call (checked on the proxy's log).
    `twin`: the lost answer must make the client's own retry create a twin (run or version),
    so a deleted twin must exist afterwards.
    """

    id: str
    stage: str  # train | register | promote
    faults: Callable[[], tuple[Fault, ...]]
    last: bool = False
    twin: str | None = None  # "run" | "version"


def _at(
    stage: str, id_: str, *specs: tuple[str, str, Action, dict[str, Any]], twin: str | None = None
) -> KillPoint:
    def make() -> tuple[Fault, ...]:
        return tuple(Fault(method, path, action, **kw) for method, path, action, kw in specs)

    return KillPoint(f"{stage}/{id_}", stage, make, last=id_ == "after-last-call", twin=twin)


def _f(
    method: str, path: str, action: Action, **kw: Any
) -> tuple[str, str, Action, dict[str, Any]]:
    return (method, path, action, kw)


CHALLENGER_ALIAS = r'"alias":\s*"challenger"'
PREVIOUS_ALIAS = r'"alias":\s*"previous_champion"'
CHAMPION_ALIAS = r'"alias":\s*"champion"'
KB, MID, KA, DROP = (
    Action.KILL_BEFORE,
    Action.KILL_MID_BODY,
    Action.KILL_AFTER,
    Action.DROP_RESPONSE,
)

KILL_POINTS = [
    # train_step: the run, the model upload
    _at("train", "before-run-create", _f("POST", API + "runs/create$", KB)),
    _at("train", "run-created-answer-lost", _f("POST", API + "runs/create$", KA)),
    _at("train", "twin-run", _f("POST", API + "runs/create$", DROP), twin="run"),
    _at(
        "train",
        "twin-run-then-kill-before-delete",
        _f("POST", API + "runs/create$", DROP),
        _f("POST", API + "runs/delete$", KB),
        twin="run",
    ),
    _at("train", "before-log-model", _f("POST", API + "logged-models$", KB)),
    _at(
        "train",
        "mid-artifact-upload",
        _f("PUT", r"/mlflow-artifacts/artifacts/.*model\.skops$", MID),
    ),
    _at("train", "uploaded-before-finalize", _f("PATCH", API + "logged-models/m-[0-9a-f]+$", KB)),
    _at("train", "run-finished-answer-lost", _f("POST", API + "runs/update$", KA, nth=2)),
    _at("train", "after-last-call", _f("GET", API + "experiments/get-by-name", KA, nth=2)),
    # register_step: the version, its alias
    _at("register", "before-create-version", _f("POST", API + "model-versions/create$", KB)),
    _at("register", "version-created-answer-lost", _f("POST", API + "model-versions/create$", KA)),
    _at(
        "register",
        "version-created-before-model-tag",
        _f("PATCH", API + "logged-models/m-[0-9a-f]+/tags$", KB),
    ),
    _at(
        "register", "twin-version", _f("POST", API + "model-versions/create$", DROP), twin="version"
    ),
    _at(
        "register",
        "twin-version-then-kill-before-delete",
        _f("POST", API + "model-versions/create$", DROP),
        _f("DELETE", API + "model-versions/delete$", KB),
        twin="version",
    ),
    _at("register", "before-description", _f("PATCH", API + "model-versions/update$", KB)),
    _at(
        "register",
        "before-alias",
        _f("POST", API + "registered-models/alias$", KB, body=CHALLENGER_ALIAS),
    ),
    _at(
        "register",
        "alias-set-answer-lost",
        _f("POST", API + "registered-models/alias$", KA, body=CHALLENGER_ALIAS),
    ),
    _at("register", "after-last-call", _f("POST", API + "runs/update$", KA)),
    # promote_step: evidence tags, previous_champion, champion
    _at("promote", "mid-evidence-tags", _f("POST", API + "model-versions/set-tag$", KB, nth=4)),
    _at(
        "promote",
        "tags-set-before-aliases",
        _f("POST", API + "registered-models/alias$", KB, body=PREVIOUS_ALIAS),
    ),
    _at(
        "promote",
        "previous-set-answer-lost",
        _f("POST", API + "registered-models/alias$", KA, body=PREVIOUS_ALIAS),
    ),
    _at(
        "promote",
        "between-previous-and-champion",
        _f("POST", API + "registered-models/alias$", KB, body=CHAMPION_ALIAS),
    ),
    _at(
        "promote",
        "champion-set-answer-lost",
        _f("POST", API + "registered-models/alias$", KA, body=CHAMPION_ALIAS),
    ),
    _at("promote", "after-last-call", _f("GET", API + "model-versions/get", KA)),
]
# Two clean cases first: the first promotion (no champion yet) and a second one, so that the
# kill points start from a registry with challenger, champion and previous_champion set.
CASES: list[KillPoint | None] = [None, None, *KILL_POINTS]
CASE_IDS = ["clean-first-promotion", "clean-second-promotion", *(kp.id for kp in KILL_POINTS)]


# ----------------------------------------------------------------------------- observation


@dataclass(frozen=True)
class Snapshot:
    """The registry of MODEL as stored: aliases, and the tags of every live version."""

    aliases: dict[str, str]
    live: dict[str, dict[str, str]]


def read_snapshot(db: Path) -> Snapshot:
    """One consistent read of the server's SQLite database (works while the server is down)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5, isolation_level=None)
    try:
        con.execute("BEGIN")
        aliases = {
            a: str(v)
            for a, v in con.execute(
                "SELECT alias, version FROM registered_model_aliases WHERE name = ?", (MODEL,)
            )
        }
        live: dict[str, dict[str, str]] = {
            str(v): {}
            for (v,) in con.execute(
                "SELECT version FROM model_versions WHERE name = ? AND current_stage != ?",
                (MODEL, DELETED),
            )
        }
        for v, key, value in con.execute(
            "SELECT version, key, value FROM model_version_tags WHERE name = ?", (MODEL,)
        ):
            if str(v) in live:
                live[str(v)][key] = value
        con.execute("COMMIT")
    finally:
        con.close()
    return Snapshot(aliases, live)


@dataclass(frozen=True)
class Expectation:
    """What one case may show: the aliases before it, its run's key, the evidence it adds."""

    key: str
    challenger: str | None
    champion: str | None
    previous: str | None
    evidence: frozenset[str]


def violations(s: Snapshot, e: Expectation) -> tuple[list[str], str]:
    """Invariant breaks in a snapshot, and its phase (B before, C challenger moved,
    I previous_champion moved, A champion moved)."""
    from airmlops_core.tracking.registry import (
        CHALLENGER,
        CHAMPION,
        IDEMPOTENCY_TAG,
        PREVIOUS_CHAMPION,
    )

    out = []
    new = {v for v, tags in s.live.items() if tags.get(IDEMPOTENCY_TAG) == e.key}
    for alias, v in sorted(s.aliases.items()):
        if v not in s.live:
            out.append(f"alias {alias} -> version {v}, which is not a live version")
    ch = s.aliases.get(CHALLENGER)
    if ch != e.challenger and ch not in new:
        out.append(
            f"challenger -> {ch}: neither the previous challenger {e.challenger} nor a "
            f"version of this run {sorted(new)}"
        )
    pair = (s.aliases.get(CHAMPION), s.aliases.get(PREVIOUS_CHAMPION))
    old = (e.champion, e.previous)
    if pair not in {old, (e.champion, e.champion)} | {(v, e.champion) for v in new}:
        out.append(
            f"(champion, previous_champion) = {pair}: before the promotion it was {old};"
            f" allowed: that, ({e.champion}, {e.champion}) mid-move, or "
            f"(<this run's version>, {e.champion})"
        )
    if pair[0] in new:
        missing = sorted(e.evidence - set(s.live[pair[0]]))
        if missing:
            out.append(f"champion {pair[0]} lacks its evidence tags {missing}")
        if ch != pair[0]:
            out.append(f"champion {pair[0]} moved ahead of challenger {ch}")
    if pair[0] in new:
        phase = "A"
    elif pair != old:
        phase = "I"
    elif ch != e.challenger:
        phase = "C"
    else:
        phase = "B"
    return out, phase


class Observer:
    """Checks the invariants on every stored state it can catch, from the proxy and a poller."""

    def __init__(self, server: KillableMlflowServer) -> None:
        self.server = server
        self._lock = threading.Lock()
        self._expect: Expectation | None = None
        self.problems: list[str] = []
        self.phases: Counter[str] = Counter()
        self.down_reads = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def begin(self, expect: Expectation) -> None:
        with self._lock:
            self._expect = expect
            self.problems, self.phases, self.down_reads = [], Counter(), 0

    def end(self) -> None:
        with self._lock:
            self._expect = None

    def check(self, where: str) -> None:
        with self._lock:
            if self._expect is None:
                return
            down = not self.server.alive()
            try:
                snap = read_snapshot(self.server.db_path)
            except sqlite3.OperationalError:  # locked by a write in progress: next time
                return
            problems, phase = violations(snap, self._expect)
            self.phases[phase] += 1
            self.down_reads += down
            for p in problems:
                text = f"{where}{' (server down)' if down else ''}: {p}"
                if text not in self.problems:
                    self.problems.append(text)

    def on_response(self, method: str, path: str, status: int) -> None:
        self.check(f"after {method} {path.split('?')[0]} -> {status}")

    def _poll(self) -> None:
        while not self._stop.wait(0.05):
            self.check("poller")


# ----------------------------------------------------------------------------- the campaign


@dataclass
class Row:
    """One line of the tally."""

    case: str
    stage: str = "-"
    action: str = "-"
    fired: str = "-"
    tries: str = ""
    down_state: str = "-"
    twins: str = "-"
    phases: str = ""
    calls_after: list[str] | None = None  # other requests the first try made after the kill
    result: str = "not run"
    seconds: float = 0.0


@dataclass
class Campaign:
    root: Path
    spec: Any
    server: KillableMlflowServer
    proxy: FaultProxy
    observer: Observer
    rows: list[Row] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)  # idempotency keys of the runs made
    refits: dict[str, Any] = field(default_factory=dict)  # run key -> independent refit
    loaded: dict[str, Any] = field(default_factory=dict)  # version -> its probe predictions
    probe: Any = None

    # -- helpers
    def client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(self.server.url)  # a reader that bypasses the faulty proxy

    def aliases(self) -> dict[str, str | None]:
        from airmlops_core.tracking import registry

        c = self.client()
        return {
            a: registry.alias_version(c, MODEL, a)
            for a in (registry.CHALLENGER, registry.CHAMPION, registry.PREVIOUS_CHAMPION)
        }

    def load_predictions(self, alias: str, version: str) -> Any:
        """Load models:/MODEL@alias (through the server, not the proxy): probe predictions."""
        import mlflow

        if version not in self.loaded:
            mlflow.set_tracking_uri(self.server.url)
            try:
                model = mlflow_sklearn_load(f"models:/{MODEL}@{alias}")
            finally:
                mlflow.set_tracking_uri(self.proxy.url)
            self.loaded[version] = model.predict_proba(self.probe)
        return self.loaded[version]

    def visible_after_restart(self, row: Row) -> None:
        """What a reader sees once the server is back, before the retry: aliases that load."""
        for alias, version in self.aliases().items():
            if version is not None:
                try:
                    self.load_predictions(alias, version)
                except Exception as exc:  # noqa: BLE001 - reported as a broken invariant
                    row.result = f"FAIL: {alias} -> {version} does not load: {exc}"
                    raise AssertionError(row.result) from exc
        self.observer.check("after restart")

    def task(
        self, stage: str, kp: KillPoint | None, row: Row, call: Callable[[int], dict[str, Any]]
    ) -> dict[str, Any]:
        """Run one Airflow task with retries: try n calls `call(n)`; the kill point's faults
        are armed for this stage's first try."""
        import mlflow

        faults = kp.faults() if kp is not None and kp.stage == stage else ()
        self.proxy.arm(*faults)
        errors: list[str] = []
        try:
            for n in range(1, MAX_TRIES + 1):
                # each Airflow try is a fresh process: nothing of the last one is active
                assert mlflow.active_run() is None, "a failed try left an active MLflow run"
                was_down = not self.server.alive()
                first_event = len(self.proxy.events)
                try:
                    out = call(n)
                except Exception as exc:  # noqa: BLE001 - the task fails, Airflow retries
                    errors.append(type(exc).__name__)
                    if n == 1 and faults:
                        row.calls_after = calls_after_kill(self.proxy.events[first_event:])
                    if was_down:  # the too-early retry failed as it must: bring it back
                        self.server.start()
                        self.visible_after_restart(row)
                    elif not self.server.alive():  # killed during this try
                        self.observer.check("server down")
                        row.down_state = _short(read_snapshot(self.server.db_path).aliases)
                    continue
                if was_down:
                    raise AssertionError(f"{stage} succeeded with the server down")
                if faults:  # the errors only when they are not the dead server's
                    odd = [e for e in errors if e != "MlflowException"]
                    row.tries = f"{n}" + (f" ({', '.join(errors)})" if odd else "")
                return out
            raise AssertionError(f"{stage} still failing after {MAX_TRIES} tries: {errors}")
        finally:
            self.proxy.disarm()
            if faults:
                row.fired = "yes" if all(f.fired.is_set() for f in faults) else "NO"

    # -- one case: a training run, then a validation run promoting it
    def run_case(self, kp: KillPoint | None, label: str) -> tuple[Row, list[str]]:
        """Run the case; returns its tally row and the invariants it broke."""
        from airmlops_core.io import data
        from airmlops_core.tracking.runs import TAG_PREFIX, RunContext
        from airmlops_core.train import estimator as training
        from airmlops_core.train import evaluation
        from airmlops_core.train import flow as train_flow
        from airmlops_core.validate import flow as validate_flow
        from airmlops_core.validate import promotion

        row = Row(case=label)
        if kp is not None:
            row.stage = kp.stage
            row.action = " + ".join(f.action.name for f in kp.faults())
        self.rows.append(row)
        t0 = time.monotonic()
        k = len(self.keys) + 1
        run_id = f"manual__outage_{k:02d}"
        key = f"{TRAIN_DAG}/{run_id}"
        spec = self.spec.model_copy(
            update={
                "source": self.spec.source.model_copy(
                    update={"uri": write_batch(self.root / "data", k)}
                )
            }
        )

        def ctx(task: str, n: int = 1, dag: str = TRAIN_DAG, run: str = run_id) -> RunContext:
            return RunContext(model=MODEL, dag_id=dag, run_id=run, task_id=task, try_number=n)

        refs = train_flow.extract_step(spec, ctx("extract"))
        train = data.read_ref(data.DataRef.from_dict(refs["train"]))
        holdout = data.read_ref(data.DataRef.from_dict(refs["holdout"]))
        refit = training.fit(spec, train)  # independent of MLflow: what the model must predict
        if self.probe is None:
            self.probe = training.feature_frame(spec, holdout)
        metrics = evaluation.evaluate(spec, refit, holdout)
        before = self.aliases()
        decision = promotion.decide(
            data_check_passed=True,
            data_check_summary="holdout ok",
            floor_failures=[],
            segment_floor_failures=[],
            comparison=None,
            fairness=None,
        )
        evidence = {
            **decision.tags(),
            f"{TAG_PREFIX}approved_by": APPROVER,
            f"{TAG_PREFIX}promoted_by": f"{VALIDATE_DAG}/manual__validate_{k:02d}",
            f"{TAG_PREFIX}data_sha256": refs["extract"]["sha256"],
        }
        self.observer.begin(
            Expectation(
                key,
                before["challenger"],
                before["champion"],
                before["previous_champion"],
                frozenset(evidence),
            )
        )
        try:
            trained = self.task(
                "train",
                kp,
                row,
                lambda n: train_flow.train_step(
                    spec, ctx("train", n), refs, tracking_uri=self.proxy.url
                ),
            )
            self.keys.append(key)
            self.refits[key] = refit
            registered = self.task(
                "register",
                kp,
                row,
                lambda n: train_flow.register_step(
                    spec,
                    ctx("register", n),
                    refs,
                    trained,
                    {"metrics": metrics, "floor_failures": []},
                    tracking_uri=self.proxy.url,
                    spec_sha="outage",
                ),
            )
            gated = {
                "promote": True,
                "reasons": decision.reasons,
                "tags": decision.tags(),
                "message": decision.message(MODEL, registered["version"]),
                "challenger": registered["version"],
                "champion": before["champion"],
                "data_sha256": refs["extract"]["sha256"],
                "metrics": metrics,
            }
            self.task(
                "promote",
                kp,
                row,
                lambda n: validate_flow.promote_step(
                    spec,
                    ctx("promote", n, VALIDATE_DAG, f"manual__validate_{k:02d}"),
                    gated,
                    tracking_uri=self.proxy.url,
                    approved_by=APPROVER,
                ),
            )
        except Exception as exc:
            if row.result == "not run":
                row.result = f"FAIL: {type(exc).__name__}: {exc}".replace("\n", " ")
            raise
        finally:
            self.observer.end()
            row.phases = "".join(
                f"{p}{self.observer.phases[p]}" for p in "BCIA" if self.observer.phases[p]
            )
            if self.observer.down_reads:
                row.phases += f" ({self.observer.down_reads} down)"
            row.seconds = time.monotonic() - t0
        problems = list(self.observer.problems)
        problems += self.final_problems(key, run_id, trained, before, evidence)
        if row.fired == "NO":
            problems.append("the kill point was never reached")
        if kp is not None and kp.last and row.calls_after:
            problems.append(
                f"the killed request was not the step's last call: then came {row.calls_after}"
            )
        twins = self.twins(key, run_id)
        row.twins = (
            ", ".join(
                f"{kind} {made} made, {dead} deleted"
                for kind, (made, dead) in twins.items()
                if made
            )
            or "-"
        )
        if kp is not None and kp.twin is not None and not twins[kp.twin][0]:
            problems.append(f"no twin {kp.twin} was made: the case did not test its path")
        row.result = "ok" if not problems else "FAIL: " + problems[0]
        return row, problems

    def twins(self, key: str, run_id: str) -> dict[str, tuple[int, int]]:
        """Twins of this training run's version and run: {kind: (made, deleted)}.

        Made = every version (run) of the training run but one, deleted or not.
        """
        from mlflow.entities import ViewType

        from airmlops_core.tracking.registry import IDEMPOTENCY_TAG
        from airmlops_core.tracking.runs import TAG_PREFIX

        con = sqlite3.connect(f"file:{self.server.db_path}?mode=ro", uri=True, timeout=5)
        try:
            stages = [
                stage
                for (stage,) in con.execute(
                    "SELECT v.current_stage FROM model_versions v JOIN model_version_tags t ON "
                    "t.name = v.name AND t.version = v.version WHERE v.name = ? AND t.key = ? "
                    "AND t.value = ?",
                    (MODEL, IDEMPOTENCY_TAG, key),
                )
            ]
        finally:
            con.close()
        c = self.client()
        exp = c.get_experiment_by_name(f"airmlops/{MODEL}")
        flt = f"tags.`{TAG_PREFIX}run_id` = '{run_id}' and tags.`{TAG_PREFIX}purpose` = 'train'"
        runs = c.search_runs([exp.experiment_id], run_view_type=ViewType.ALL, filter_string=flt)
        dead_runs = sum(r.info.lifecycle_stage == "deleted" for r in runs)
        return {
            "version": (max(0, len(stages) - 1), stages.count(DELETED)),
            "run": (max(0, len(runs) - 1), dead_runs),
        }

    def final_problems(
        self,
        key: str,
        run_id: str,
        trained: dict[str, Any],
        before: dict[str, str | None],
        evidence: dict[str, str],
    ) -> list[str]:
        """The state a case must leave, read through the API, the database and model loads."""
        import numpy as np
        from mlflow.entities import ViewType

        from airmlops_core.tracking import registry
        from airmlops_core.tracking.runs import TAG_PREFIX

        out = []
        c = self.client()
        mine = registry.versions_with_key(c, MODEL, key)
        if len(mine) != 1:
            out.append(
                f"{len(mine)} live versions for training run {key}: "
                f"{[v.version for v in mine]} (want exactly one)"
            )
        snap = read_snapshot(self.server.db_path)
        keys = Counter(tags.get(registry.IDEMPOTENCY_TAG) for tags in snap.live.values())
        # (an earlier case's duplicates are that case's failure, not this one's)
        strays = {k: n for k, n in keys.items() if k not in self.keys or (k == key and n != 1)}
        if strays:
            out.append(f"live versions that are not the one version of a training run: {strays}")
        if not mine:
            return out
        new = str(mine[0].version)
        if mine[0].run_id != trained["mlflow_run_id"]:
            out.append(
                f"version {new} comes from run {mine[0].run_id}, "
                f"not the training run {trained['mlflow_run_id']}"
            )
        now = self.aliases()
        want = {"challenger": new, "champion": new, "previous_champion": before["champion"]}
        if now != want:
            out.append(f"aliases {now}, want {want}")
        if (
            before["champion"] is not None
            and now["champion"] is not None
            and int(now["champion"]) <= int(before["champion"])
        ):
            out.append(f"champion downgraded from {before['champion']} to {now['champion']}")
        tags = c.get_model_version(MODEL, new).tags
        wrong = {k: tags.get(k) for k, v in evidence.items() if tags.get(k) != v}
        if wrong:
            out.append(f"version {new} evidence tags wrong or missing: {wrong}")
        for alias, version in now.items():
            if version is None:
                continue
            run_key = snap.live.get(version, {}).get(registry.IDEMPOTENCY_TAG)
            try:
                got = self.load_predictions(alias, version)
            except Exception as exc:  # noqa: BLE001 - reported
                out.append(f"models:/{MODEL}@{alias} (version {version}) does not load: {exc}")
                continue
            if run_key not in self.refits or not np.allclose(
                got, self.refits[run_key].predict_proba(self.probe), atol=1e-9
            ):
                out.append(f"models:/{MODEL}@{alias} does not predict what run {run_key} fit")
        flt = (
            f"tags.`{TAG_PREFIX}dag_id` = '{TRAIN_DAG}' and tags.`{TAG_PREFIX}run_id` = "
            f"'{run_id}' and tags.`{TAG_PREFIX}purpose` = 'train'"
        )
        exp = c.get_experiment_by_name(f"airmlops/{MODEL}")
        runs = c.search_runs(
            [exp.experiment_id], filter_string=flt, run_view_type=ViewType.ACTIVE_ONLY
        )
        if [r.info.run_id for r in runs] != [trained["mlflow_run_id"]]:
            out.append(
                f"{len(runs)} live MLflow runs for training run {run_id} "
                f"(want only {trained['mlflow_run_id']})"
            )
        elif runs[0].info.status != "FINISHED":
            out.append(f"training run {run_id} is {runs[0].info.status}, not FINISHED")
        return out


def calls_after_kill(events: list[Any]) -> list[str]:
    """Requests of one try after the one the proxy dropped, other than its client-side retry."""
    dropped = [i for i, e in enumerate(events) if e.outcome.startswith("dropped")]
    if not dropped:
        return []
    killed = events[dropped[0]]
    return [
        f"{e.method} {e.path.split('?')[0]}"
        for e in events[dropped[0] + 1 :]
        if (e.method, e.path) != (killed.method, killed.path)
    ]


def _short(aliases: dict[str, str]) -> str:
    names = {"challenger": "ch", "champion": "c", "previous_champion": "p"}
    return " ".join(f"{names.get(a, a)}={v}" for a, v in sorted(aliases.items()))


def write_batch(data_dir: Path, k: int) -> str:
    """A tiny batch for training run k (its own seed): 240 rows, 2 numeric + 1 categorical."""
    import numpy as np
    import pandas as pd

    from airmlops_core.io import data

    rng = np.random.default_rng(1000 + k)
    n = 240
    df = pd.DataFrame(
        {
            "x1": rng.normal(size=n),
            "x2": rng.normal(size=n),
            "color": rng.choice(["red", "green", "blue"], n),
        }
    )
    noise = rng.normal(scale=0.7, size=n)
    df["y"] = (df["x1"] + 0.5 * df["x2"] + (df["color"] == "red") + noise > 0.3).astype("int64")
    name = f"batch_{k:02d}.parquet"
    data.write_frame(df, str(data_dir / name))
    return name


SPEC_YAML = f"""\
name: {MODEL}
task: binary
source: {{kind: file, uri: batch_01.parquet}}
target: y
features: {{numeric: [x1, x2], categorical: [color]}}
estimator: {{class: sklearn.linear_model.LogisticRegression, params: {{max_iter: 200}}}}
split: {{test_size: 0.25, seed: 3, stratify: true}}
metrics: {{primary: roc_auc}}
"""


def print_tally(rows: list[Row], server: KillableMlflowServer, seconds: float) -> None:
    heads = (
        "case",
        "stage",
        "fault",
        "hit",
        "tries",
        "stored aliases while down",
        "twins",
        "states seen",
        "outcome",
        "s",
    )
    table = [
        (
            r.case,
            r.stage,
            r.action,
            r.fired,
            r.tries or "-",
            r.down_state,
            r.twins,
            r.phases or "-",
            r.result[:80],
            f"{r.seconds:.1f}",
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(heads)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print("\n\nMLflow outage campaign: kill point x outcome")
    print(line.format(*heads))
    print(line.format(*("-" * w for w in widths)))
    for t in table:
        print(line.format(*t))
    ok = sum(r.result == "ok" for r in rows)
    print(
        f"\n{ok}/{len(rows)} cases ok; server started {server.starts} times (killed "
        f"{server.kills}), first start {server.start_seconds[0]:.1f} s, restarts "
        f"{sum(server.start_seconds[1:]) / max(1, len(server.start_seconds) - 1):.2f} s "
        f"on average; campaign {seconds:.0f} s"
    )
    print(
        "states seen: reads of the stored registry (after each state-changing request, "
        "every 50 ms, after each restart) in each phase: B before, C challenger moved, "
        "I previous_champion moved (champion not yet), A champion moved; (n down): reads "
        "while the server was dead"
    )


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Campaign]:
    import mlflow

    from airmlops_core.spec import load_spec

    root = tmp_path_factory.mktemp("outage")
    (root / "data").mkdir()
    spec_path = root / f"{MODEL}.yaml"
    spec_path.write_text(SPEC_YAML)
    spec = load_spec(spec_path)
    previous_uri = mlflow.get_tracking_uri()
    t0 = time.monotonic()
    with pytest.MonkeyPatch.context() as mp:
        for name, value in CLIENT_HTTP_ENV.items():
            mp.setenv(name, value)
        mp.setenv("AIRMLOPS_DATA_DIR", str(root / "data"))
        mp.setenv("AIRMLOPS_WORK_URI", str(root / "work"))
        mp.setenv("AIRMLOPS_CODE_VERSION", "outage-test")
        server = KillableMlflowServer(root / "mlflow")
        observer = Observer(server)
        proxy = FaultProxy(server, on_response=observer.on_response)
        camp = Campaign(root, spec, server, proxy, observer)
        try:
            server.start()
            proxy.start()
            observer.start()
            yield camp
        finally:
            observer.stop()
            proxy.stop()
            server.close()
            mlflow.set_tracking_uri(previous_uri)
            if camp.rows:
                print_tally(camp.rows, server, time.monotonic() - t0)


def test_proxy_kill_points_reach_the_server(campaign: Campaign) -> None:
    """The proxy's actions do what they say, seen from the server's own database."""
    import requests

    from airmlops_core.tracking.registry import ensure_registered_model

    name = "outage_proxy_probe"
    ensure_registered_model(campaign.client(), name)
    url = f"{campaign.proxy.url}{API}registered-models/set-tag"

    def stored(key: str) -> str | None:
        con = sqlite3.connect(f"file:{campaign.server.db_path}?mode=ro", uri=True)
        try:
            found = con.execute(
                "SELECT value FROM registered_model_tags WHERE name = ? AND key = ?", (name, key)
            ).fetchone()
        finally:
            con.close()
        return found[0] if found else None

    for action, reaches in ((KB, False), (MID, False), (KA, True), (DROP, True)):
        key = f"probe_{action.name.lower()}"
        (fault,) = campaign.proxy.arm(Fault("POST", "registered-models/set-tag$", action))
        with pytest.raises(requests.ConnectionError):
            requests.post(url, json={"name": name, "key": key, "value": "x" * 4000}, timeout=10)
        campaign.proxy.disarm()
        assert fault.fired.is_set()
        killed = action is not DROP
        assert campaign.server.alive() is not killed, action
        if killed:
            campaign.server.start()
        assert (stored(key) == "x" * 4000) is reaches, action
    # a clean request goes through unchanged
    assert (
        requests.post(
            url, json={"name": name, "key": "clean", "value": "v"}, timeout=10
        ).status_code
        == 200
    )
    assert stored("clean") == "v"


@pytest.mark.parametrize("kill_point", CASES, ids=CASE_IDS)
def test_outage(
    campaign: Campaign, kill_point: KillPoint | None, request: pytest.FixtureRequest
) -> None:
    """Kill MLflow at one point, retry as Airflow does: the invariants hold throughout."""
    row, problems = campaign.run_case(kill_point, request.node.callspec.id)
    if problems:
        pytest.fail(f"{row.case}:\n  " + "\n  ".join(problems), pytrace=False)
    assert row.result == "ok"
