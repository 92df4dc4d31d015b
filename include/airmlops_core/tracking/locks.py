"""Leases: mutual exclusion per key across processes and hosts, held in the MLflow registry.

Every writer of a shared registry state (the `champion` alias of a model) already talks to the
same MLflow tracking server, and its database enforces one thing atomically: a registered model
name exists at most once. A lease on `key` is the registered model `airmlops-lease.<key>`:
creating it takes the lease (RESOURCE_ALREADY_EXISTS: someone else holds it), its tags say who
holds it and for how long, and retiring it releases it. No shared disk, no host-local lock.

Time, without trusting wall clocks across hosts:

- the holder writes only inside its safe window, `ttl * (1 - MARGIN)` seconds of its own
  monotonic clock counted from before its create request (`Lease.check` before each write);
- a waiter breaks a lease only after watching that same lease (holder id and creation
  timestamp) for its recorded `ttl` on *its* monotonic clock, so a lease is never broken before
  its holder's window closed, whatever the hosts' wall clocks say.

Retiring (a release or a break) never deletes by name alone: it renames the exact lease it read
to a name derived from that lease's holder id and creation timestamp (`...retired.<digest>`), an
atomic move that fails when another retirer got there first; it reads the renamed record back,
deletes it when it is the lease it meant and renames it back when it is not (a newer lease took
the name in between). A retried request can therefore never remove a newer lease.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import random
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from airmlops_core.errors import LeaseBusy, LeaseLost
from airmlops_core.tracking.runs import TAG_PREFIX

log = logging.getLogger(__name__)

PREFIX = "airmlops-lease."
RETIRED = ".retired."
HOLDER_TAG = f"{TAG_PREFIX}lease.holder"
OWNER_TAG = f"{TAG_PREFIX}lease.owner"
TTL_TAG = f"{TAG_PREFIX}lease.ttl_seconds"
EXPIRES_TAG = f"{TAG_PREFIX}lease.expires_at"  # for people: the holder's wall clock, never used
DEFAULT_TTL = 60.0
MAX_TTL = 600.0  # a lease recording more (forged) is broken after this long all the same
MARGIN = 1 / 3  # of the ttl, kept for a request still in flight when the window closes
DEFAULT_WAIT = 120.0
POLL_MAX = 0.5
_EXISTS = "RESOURCE_ALREADY_EXISTS"
_MISSING = "RESOURCE_DOES_NOT_EXIST"


def lease_name(key: str) -> str:
    """The registered model that is the lease on `key` (never a valid spec model name).

    Raises:
        ValueError: `key` is empty or holds '/' or ':' (MLflow refuses those in names).
    """
    if not key or "/" in key or ":" in key:
        raise ValueError(f"lease key {key!r} must be non-empty, without '/' or ':'")
    return PREFIX + key


def parse_ttl(value: str | None) -> float:
    """A lease's recorded ttl in seconds: DEFAULT_TTL unless a positive number, at most MAX_TTL."""
    try:
        ttl = float(value) if value is not None else DEFAULT_TTL
    except ValueError:
        return DEFAULT_TTL
    if math.isnan(ttl) or ttl <= 0:
        return DEFAULT_TTL
    return min(ttl, MAX_TTL)


@dataclass(frozen=True)
class LeaseRecord:
    """A lease as a reader finds it in the registry."""

    key: str
    holder: str
    owner: str
    ttl: float
    created_ms: int

    @classmethod
    def of(cls, key: str, model: Any) -> LeaseRecord:
        """The record of registered model `model` (a lease on `key`)."""
        tags = dict(model.tags or {})
        return cls(
            key=key,
            holder=tags.get(HOLDER_TAG, ""),
            owner=tags.get(OWNER_TAG, "an unknown writer"),
            ttl=parse_ttl(tags.get(TTL_TAG)),
            created_ms=int(model.creation_timestamp or 0),
        )

    @property
    def identity(self) -> tuple[str, int]:
        """What tells this lease from any other on the same key: holder id, creation time."""
        return self.holder, self.created_ms

    @property
    def tomb(self) -> str:
        """The name this exact lease is renamed to when it is retired."""
        digest = hashlib.sha256(f"{self.holder}|{self.created_ms}".encode()).hexdigest()[:24]
        return f"{lease_name(self.key)}{RETIRED}{digest}"


def read_lease(client: MlflowClient, key: str, name: str | None = None) -> LeaseRecord | None:
    """The lease on `key` (or the registered model `name` holding it), None when there is none."""
    try:
        model = client.get_registered_model(name or lease_name(key))
    except MlflowException as exc:
        if exc.error_code == _MISSING:
            return None
        raise
    return LeaseRecord.of(key, model)


def retire(client: MlflowClient, record: LeaseRecord) -> bool:
    """Remove exactly the lease `record` describes (a release or a break), never a newer one.

    Returns:
        True when it was removed now; False when it was already gone or replaced.
    """
    name = lease_name(record.key)
    current = read_lease(client, record.key)
    if current is None or current.identity != record.identity:
        return False
    failure: MlflowException | None = None
    try:
        client.rename_registered_model(name, record.tomb)
    except MlflowException as exc:
        failure = exc  # another retirer was first, or a retry of our own rename: the tomb tells
    moved = read_lease(client, record.key, record.tomb)
    if moved is None:
        if failure is not None and failure.error_code not in (_EXISTS, _MISSING):
            raise failure
        return False
    if moved.identity != record.identity:
        if failure is None:  # we moved a newer lease that took the name in between
            log.error("%s was taken again before it was retired; giving it back", name)
            try:
                client.rename_registered_model(record.tomb, name)
            except MlflowException:
                log.exception("could not give %s back: its holder will find it lost", name)
        return False
    try:
        client.delete_registered_model(record.tomb)
    except MlflowException as exc:
        if exc.error_code != _MISSING:
            raise
    return True


class Lease:
    """An exclusive lease on `key` held in the MLflow registry; a context manager.

    `with Lease(client, key, owner=...) as lease:` takes it (waiting for a live holder, breaking
    a stale one), and releases it on the way out, error or not. Call `lease.check()` before each
    write that must not happen without it.

    Args:
        client: A client of the tracking server every writer shares.
        key: What the lease guards, e.g. `<model>.champion` (no '/' or ':').
        owner: Who takes it, for people reading the registry (a DAG run, a user).
        ttl: Seconds the lease lasts; its holder writes only during `ttl * (1 - MARGIN)`.
        wait: Seconds to wait while the lease changes hands. A lease seen unchanged is waited
            out for its recorded ttl (at most MAX_TTL) and broken, even when that is longer.
    """

    def __init__(
        self,
        client: MlflowClient,
        key: str,
        *,
        owner: str = "",
        ttl: float = DEFAULT_TTL,
        wait: float = DEFAULT_WAIT,
    ) -> None:
        if not 0 < ttl <= MAX_TTL:
            raise ValueError(f"lease ttl must be in (0, {MAX_TTL:g}] seconds, not {ttl}")
        self.client = client
        self.key = key
        self.name = lease_name(key)
        self.owner = f"{owner or 'unnamed'} on {socket.gethostname()} pid {os.getpid()}"
        self.ttl = float(ttl)
        self.wait = float(wait)
        self.holder = uuid.uuid4().hex
        self.record: LeaseRecord | None = None
        self._since = 0.0

    @property
    def window(self) -> float:
        """Seconds after taking the lease during which its holder may write."""
        return self.ttl * (1 - MARGIN)

    def _create(self) -> LeaseRecord | None:
        expires = datetime.now(UTC) + timedelta(seconds=self.ttl)
        tags = {
            HOLDER_TAG: self.holder,
            OWNER_TAG: self.owner[:5000],
            TTL_TAG: repr(self.ttl),
            EXPIRES_TAG: expires.isoformat(timespec="seconds"),
        }
        description = (
            f"Not a model: the lease of {self.owner[:500]} on '{self.key}'. Deleted on release; "
            f"a lease left for {self.ttl:g} s (its holder died) is broken by the next writer."
        )
        try:
            model = self.client.create_registered_model(
                self.name, tags=tags, description=description
            )
        except MlflowException as exc:
            # taken; or taken and released at once: MLflow's SQL store answers a name conflict
            # by reading the holder back, and finds none when it was retired in between
            if exc.error_code not in (_EXISTS, _MISSING):
                raise
            return None
        return LeaseRecord.of(self.key, model)

    def acquire(self) -> Lease:
        """Take the lease: wait for a live holder, break a stale lease, then race to create.

        While the lease changes hands (live writers) this waits up to `wait`; a lease that
        stays unchanged is waited out for its recorded ttl and then broken, so a dead holder
        never blocks for longer than that.

        Raises:
            LeaseBusy: The lease changed hands again after `wait` had run out, or a stale
                lease could not be broken within `wait + MAX_TTL`.
        """
        started = time.monotonic()
        watched: LeaseRecord | None = None
        watched_since = started
        attempt = 0
        while True:
            sent = time.monotonic()
            record = self._create() or read_lease(self.client, self.key)
            if record is not None and record.holder == self.holder:
                # ours: just created, or created by a retry whose response was lost
                self.record, self._since = record, sent
                log.debug("took %s", self.name)
                return self
            now = time.monotonic()
            if record is None or watched is None or record.identity != watched.identity:
                if now - started >= self.wait:
                    holder = record.owner if record else "other writers"
                    raise LeaseBusy(
                        f"{self.name} is held by {holder}; waited {now - started:.0f} s "
                        f"while it changed hands (wait {self.wait:g} s)"
                    )
                if record is None:
                    continue  # released in between: race again at once
                watched, watched_since = record, now
            elif now - watched_since >= record.ttl:
                log.warning(
                    "breaking the lease %s of %s: unchanged for %.0f s, past its ttl",
                    self.name,
                    record.owner,
                    now - watched_since,
                )
                if retire(self.client, record):
                    continue  # race to create it again
            if now - started >= self.wait + MAX_TTL:
                raise LeaseBusy(f"{self.name} of {record.owner} could not be broken")
            attempt += 1
            time.sleep(min(POLL_MAX, 0.05 * 2 ** min(attempt, 5)) * random.uniform(0.5, 1))

    def check(self) -> None:
        """Make sure the lease is still ours and inside its safe window before a write.

        Raises:
            LeaseLost: It is not held, its window has closed, or someone broke it.
        """
        if self.record is None:
            raise LeaseLost(f"{self.name} is not held by this writer")
        now = read_lease(self.client, self.key)
        held = time.monotonic() - self._since
        if held > self.window:
            raise LeaseLost(
                f"{self.name} held for {held:.1f} s, past its safe window of {self.window:g} s "
                f"(ttl {self.ttl:g} s): stopped before the next write"
            )
        if now is None or now.identity != self.record.identity:
            by = now.owner if now else "nobody"
            raise LeaseLost(f"{self.name} was broken while held; now held by {by}")

    def release(self) -> None:
        """Give the lease up (exactly this one: a newer holder's lease is left alone)."""
        record, self.record = self.record, None
        if record is not None:
            retire(self.client, record)
            log.debug("released %s", self.name)

    def __enter__(self) -> Lease:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.release()
        except MlflowException:
            # the work is done or failed already; the lease expires after its ttl
            log.warning("could not release %s; it expires in %g s", self.name, self.ttl)
