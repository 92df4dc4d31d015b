"""Model registry operations: idempotent registration and alias handling."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, TypedDict

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from airmlops_core.errors import PromotionConflict
from airmlops_core.tracking import locks
from airmlops_core.tracking.runs import TAG_PREFIX, _q

log = logging.getLogger(__name__)

IDEMPOTENCY_TAG = f"{TAG_PREFIX}idempotency_key"
CHALLENGER = "challenger"
CHAMPION = "champion"
PREVIOUS_CHAMPION = "previous_champion"
SHADOW = "shadow"
"""A challenger that passed the holdout gate and is scored in the shadow of the champion."""


class RegisteredDict(TypedDict):
    """A Registered as a JSON-able dict (`Registered.to_dict`)."""

    name: str
    version: str
    created: bool


@dataclass(frozen=True)
class Registered:
    """A registered model version and whether this call created it."""

    name: str
    version: str
    created: bool

    def to_dict(self) -> RegisteredDict:
        return {"name": self.name, "version": self.version, "created": self.created}


def ensure_registered_model(
    client: MlflowClient, name: str, description: str = "", tags: dict[str, str] | None = None
) -> None:
    """Create registered model `name` unless it exists."""
    try:
        client.create_registered_model(name, tags=tags, description=description or None)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise


def versions_with_key(client: MlflowClient, name: str, key: str) -> list[Any]:
    """Live versions of `name` carrying idempotency key `key`, oldest first."""
    flt = f"name = '{_q(name)}' and tags.`{IDEMPOTENCY_TAG}` = '{_q(key)}'"
    found = client.search_model_versions(filter_string=flt, max_results=100)
    return sorted(found, key=lambda mv: int(mv.version))


def register_version(
    client: MlflowClient,
    name: str,
    model_uri: str,
    *,
    run_id: str,
    idempotency_key: str,
    tags: dict[str, str],
    alias: str | None = CHALLENGER,
    description: str = "",
) -> Registered:
    """Register `model_uri` as a version of `name` exactly once per idempotency key.

    A version already carrying the key is reused (a retried task). Should the client's own
    POST retry have created a twin, the oldest version wins and twins are deleted. The alias
    is (re)pointed at the winner last, so it never names a version still being created.
    """
    ensure_registered_model(client, name)
    existing = versions_with_key(client, name, idempotency_key)
    created = False
    if existing:
        log.info(
            "version %s of %s already registered for key %s",
            existing[0].version,
            name,
            idempotency_key,
        )
    else:
        import mlflow

        all_tags = {**tags, IDEMPOTENCY_TAG: idempotency_key}
        mv = mlflow.register_model(model_uri, name, tags=all_tags)
        log.info("registered %s version %s from run %s", name, mv.version, run_id)
        created = True
        existing = versions_with_key(client, name, idempotency_key) or [mv]
    winner = existing[0]
    for twin in existing[1:]:
        log.warning(
            "deleting duplicate version %s of %s (key %s)", twin.version, name, idempotency_key
        )
        client.delete_model_version(name, twin.version)
    if description:
        client.update_model_version(name, winner.version, description=description)
    if alias:
        client.set_registered_model_alias(name, alias, winner.version)
    return Registered(name=name, version=str(winner.version), created=created)


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version an alias points at, or None when the alias (or model) does not exist."""
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"):
            return None
        raise


class AliasMoveDict(TypedDict):
    """An AliasMove as a JSON-able dict (`AliasMove.to_dict`)."""

    name: str
    champion: str
    previous_champion: str | None
    changed: bool


@dataclass(frozen=True)
class AliasMove:
    """Where `champion` and `previous_champion` point after a promotion or rollback."""

    name: str
    champion: str
    previous_champion: str | None
    changed: bool

    def to_dict(self) -> AliasMoveDict:
        return {
            "name": self.name,
            "champion": self.champion,
            "previous_champion": self.previous_champion,
            "changed": self.changed,
        }


def champion_lease_key(name: str) -> str:
    """The lease key every writer of `name`'s `champion` takes (tracking.locks)."""
    return f"{name}.{CHAMPION}"


def move_champion(
    client: MlflowClient,
    name: str,
    new_version: str,
    *,
    expected_champion: str | None,
    tags: dict[str, str] | None = None,
    owner: str = "",
    lease_ttl: float = locks.DEFAULT_TTL,
) -> AliasMove:
    """Point `champion` at `new_version`, `previous_champion` at the old one (compare-and-set).

    Every writer of `champion` comes through here, and does the compare and the set inside the
    model's champion lease (`champion_lease_key`, held in the registry: one writer at a time
    across DAGs, processes and hosts). The evidence tags land on the new version first, then
    `previous_champion` moves (the champion still answers), then `champion`: no intermediate
    state leaves an alias dangling or lost, and a retry after any failure converges. A retry
    that finds `champion` already at `new_version` (its own earlier try) moves nothing.

    Args:
        owner: Who moves it (a DAG run, a user), shown on the lease while it is held.
        lease_ttl: Seconds the lease lasts should this writer die holding it.

    Raises:
        PromotionConflict: `champion` points neither at `expected_champion` nor at
            `new_version`, i.e. someone else moved it in between.
        LeaseBusy: Another writer held the lease for longer than the wait (retried).
        LeaseLost: The lease ran out before the last write; `champion` did not move (retried).
    """
    with locks.Lease(client, champion_lease_key(name), owner=owner, ttl=lease_ttl) as lease:
        return _compare_and_set(client, name, str(new_version), expected_champion, tags, lease)


def _compare_and_set(
    client: MlflowClient,
    name: str,
    new_version: str,
    expected_champion: str | None,
    tags: dict[str, str] | None,
    lease: locks.Lease,
) -> AliasMove:
    current = alias_version(client, name, CHAMPION)
    if current == new_version:
        return AliasMove(
            name, new_version, alias_version(client, name, PREVIOUS_CHAMPION), changed=False
        )
    if current != (str(expected_champion) if expected_champion is not None else None):
        raise PromotionConflict(
            f"{name}: champion is version {current}, but the gate compared "
            f"against {expected_champion}; re-evaluate"
        )
    for key, value in (tags or {}).items():
        client.set_model_version_tag(name, new_version, key, value)
    if current is not None:
        lease.check()
        client.set_registered_model_alias(name, PREVIOUS_CHAMPION, current)
    lease.check()
    client.set_registered_model_alias(name, CHAMPION, new_version)
    after = alias_version(client, name, CHAMPION)
    if after != new_version:
        raise PromotionConflict(
            f"{name}: champion is {after} right after moving it to "
            f"{new_version}: a writer that bypasses the champion lease interleaved"
        )
    return AliasMove(name, new_version, current, changed=True)
