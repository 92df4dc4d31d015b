"""Concurrent writers of `champion` in separate processes, against real MLflow servers.

Each writer is a fresh spawned interpreter sharing nothing but the tracking server (SQLite
backend, and PostgreSQL as MLflow's backend store when the machine has its server binaries):
one promotion wins, every other writer gets a PromotionConflict, none is silently replaced.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import secrets
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from airmlops_core.tracking import locks, registry
from champion_writers import WRITER_TAG, die_mid_move, race
from mlflow_server import MlflowServer
from pgserver import PostgresServer, PostgresUnavailable

WRITERS = 8
SPAWN = multiprocessing.get_context("spawn")


class PostgresMlflowServer(MlflowServer):
    """`mlflow server` with a PostgreSQL backend store."""

    def __init__(self, root: Path, backend_uri: str) -> None:
        super().__init__(root)
        self.backend_uri = backend_uri

    def argv(self) -> list[str]:
        """The SQLite server's command line with the PostgreSQL URI as backend store."""
        argv = super().argv()
        argv[argv.index("--backend-store-uri") + 1] = self.backend_uri
        return argv


@pytest.fixture(scope="module")
def postgres_mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An MLflow server whose backend store is a real PostgreSQL database."""
    try:
        pg = PostgresServer()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    password = secrets.token_urlsafe(12)
    with pg:
        subprocess.run(
            [
                "psql",
                "-U",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                f"CREATE ROLE mlflow LOGIN PASSWORD '{password}'",
                "-c",
                "CREATE DATABASE mlflow OWNER mlflow",
            ],
            env={**os.environ, **pg.env},
            check=True,
            capture_output=True,
        )
        root = tmp_path_factory.mktemp("mlflow_pg")
        with PostgresMlflowServer(root, pg.url("mlflow", password, "mlflow")) as server:
            yield server.url


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, mlflow_url: str) -> str:
    """The tracking server every writer shares, by MLflow backend store."""
    return mlflow_url if request.param == "sqlite" else request.getfixturevalue("postgres_mlflow")


def model_with_versions(url: str, count: int) -> tuple[MlflowClient, str, list[str]]:
    """A fresh registered model with `count` versions (of an empty run: never loaded here)."""
    client = MlflowClient(url)
    name = f"race_{uuid.uuid4().hex[:10]}"
    client.create_registered_model(name)
    run = client.create_run(client.create_experiment(name))
    source = f"runs:/{run.info.run_id}/model"
    made = [client.create_model_version(name, source, run_id=run.info.run_id) for _ in range(count)]
    return client, name, [str(mv.version) for mv in made]


def lease_models(client: MlflowClient, name: str) -> list[str]:
    key = registry.champion_lease_key(name)
    found = client.search_registered_models(filter_string=f"name LIKE '{locks.lease_name(key)}%'")
    return [m.name for m in found]


def run_race(url: str, name: str, versions: list[str]) -> list[tuple[str, str, str, str]]:
    barrier = SPAWN.Barrier(len(versions))
    results = SPAWN.Queue()
    procs = [SPAWN.Process(target=race, args=(url, name, v, barrier, results)) for v in versions]
    for p in procs:
        p.start()
    try:
        outcomes = [results.get(timeout=600) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    return outcomes


@pytest.mark.parametrize("stale_lease", [False, True], ids=["free", "after_a_dead_holder"])
def test_concurrent_promotions_leave_one_winner_and_clear_conflicts(
    server: str, stale_lease: bool
) -> None:
    client, name, (base, *mine) = model_with_versions(server, 1 + WRITERS)
    client.set_registered_model_alias(name, registry.CHAMPION, base)
    if stale_lease:  # every writer must wait it out, then break it: only one may win
        locks.Lease(client, registry.champion_lease_key(name), owner="dead", ttl=2).acquire()

    outcomes = run_race(server, name, mine)

    assert [o for o in outcomes if o[0] == "error"] == []
    assert {o[2] for o in outcomes} == {base}  # every writer read champion = base
    moved = [o for o in outcomes if o[0] == "moved"]
    assert len(moved) == 1, outcomes
    winner = moved[0][1]
    assert json.loads(moved[0][3]) == {
        "name": name,
        "champion": winner,
        "previous_champion": base,
        "changed": True,
    }
    conflicts = [o for o in outcomes if o[0] == "conflict"]
    assert len(conflicts) == WRITERS - 1
    for _, _, _, message in conflicts:
        assert f"champion is version {winner}, but the gate compared against {base}" in message
    assert registry.alias_version(client, name, registry.CHAMPION) == winner
    assert registry.alias_version(client, name, registry.PREVIOUS_CHAMPION) == base
    tagged = {v for v in mine if WRITER_TAG in client.get_model_version(name, v).tags}
    assert tagged == {winner}  # the losers wrote nothing
    assert lease_models(client, name) == []


def test_a_writer_killed_mid_move_blocks_the_next_only_until_its_lease_expires(
    mlflow_url: str,
) -> None:
    client, name, (base, doomed, next_one) = model_with_versions(mlflow_url, 3)
    client.set_registered_model_alias(name, registry.CHAMPION, base)
    reached = SPAWN.Event()
    proc = SPAWN.Process(target=die_mid_move, args=(mlflow_url, name, doomed, 3.0, reached))
    proc.start()
    try:
        assert reached.wait(300), "the doomed writer never got to its last write"
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # previous_champion moved, champion not yet
        proc.join(30)
    assert lease_models(client, name) == [locks.lease_name(registry.champion_lease_key(name))]

    started = time.monotonic()
    move = registry.move_champion(client, name, next_one, expected_champion=base)
    waited = time.monotonic() - started

    assert 3.0 <= waited < 20, waited
    assert (move.champion, move.previous_champion, move.changed) == (next_one, base, True)
    assert registry.alias_version(client, name, registry.CHAMPION) == next_one
    assert registry.alias_version(client, name, registry.PREVIOUS_CHAMPION) == base
    assert lease_models(client, name) == []
