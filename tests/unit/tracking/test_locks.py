"""The registry lease's edge cases, against a real MLflow server (tracking.locks)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import PERMISSION_DENIED, RESOURCE_DOES_NOT_EXIST

from airmlops_core.errors import LeaseBusy, LeaseLost
from airmlops_core.spec import check_model_name
from airmlops_core.tracking import locks
from airmlops_core.tracking.locks import (
    DEFAULT_TTL,
    HOLDER_TAG,
    MAX_TTL,
    OWNER_TAG,
    TTL_TAG,
    Lease,
    lease_name,
    parse_ttl,
    read_lease,
    retire,
)


@pytest.fixture
def client(mlflow_url: str) -> MlflowClient:
    return MlflowClient(mlflow_url)


@pytest.fixture
def key() -> str:
    return f"lock{uuid.uuid4().hex[:12]}.champion"


def left_behind(client: MlflowClient, key: str) -> list[str]:
    """Every registered model a lease on `key` made: the lease itself and retired ones."""
    found = client.search_registered_models(filter_string=f"name LIKE '{lease_name(key)}%'")
    return sorted(m.name for m in found)


def abandoned(client: MlflowClient, key: str, ttl: float) -> Lease:
    """A lease taken and never released: its holder died."""
    return Lease(client, key, owner="dead writer", ttl=ttl).acquire()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, DEFAULT_TTL),
        ("30", 30.0),
        ("0.25", 0.25),
        ("abc", DEFAULT_TTL),
        ("nan", DEFAULT_TTL),
        ("0", DEFAULT_TTL),
        ("-5", DEFAULT_TTL),
        ("inf", MAX_TTL),
        ("1e9", MAX_TTL),
    ],
)
def test_a_recorded_ttl_is_a_positive_number_and_a_forged_one_is_capped(value, expected) -> None:
    assert parse_ttl(value) == expected


def test_lease_names_never_collide_with_a_model() -> None:
    name = lease_name("customer_churn.champion")
    assert name == "airmlops-lease.customer_churn.champion"
    with pytest.raises(ValueError, match="lowercase letters"):
        check_model_name(name)
    for bad in ("", "a/b", "a:b"):
        with pytest.raises(ValueError, match="lease key"):
            lease_name(bad)
    with pytest.raises(ValueError, match="ttl"):
        Lease(MlflowClient("http://127.0.0.1:9"), "k", ttl=MAX_TTL + 1)


def test_a_held_lease_says_who_holds_it_and_nothing_is_left_after_release(client, key) -> None:
    with Lease(client, key, owner="m__validate/run_1", ttl=30) as lease:
        model = client.get_registered_model(lease_name(key))
        assert model.tags[HOLDER_TAG] == lease.holder
        assert model.tags[OWNER_TAG].startswith("m__validate/run_1 on ")
        assert float(model.tags[TTL_TAG]) == 30
        assert model.description.startswith("Not a model: the lease of m__validate/run_1")
        lease.check()
    assert left_behind(client, key) == []
    with pytest.raises(LeaseLost, match="not held"):
        lease.check()


def test_an_error_inside_releases_the_lease(client, key) -> None:
    with pytest.raises(RuntimeError, match="boom"), Lease(client, key, ttl=30):
        raise RuntimeError("boom")
    assert left_behind(client, key) == []
    started = time.monotonic()
    with Lease(client, key, ttl=30, wait=0):  # free at once
        pass
    assert time.monotonic() - started < 5


def test_a_waiter_gets_the_lease_when_its_holder_releases(client, key) -> None:
    holder = Lease(client, key, owner="first", ttl=30).acquire()
    threading.Timer(1.5, holder.release).start()
    started = time.monotonic()
    with Lease(client, key, owner="second", ttl=30) as second:
        waited = time.monotonic() - started
        assert read_lease(client, key).owner.startswith("second on ")  # type: ignore[union-attr]
        second.check()
    assert 1.0 <= waited < 10, waited


def test_a_dead_holders_lease_is_broken_only_after_its_ttl(client, key) -> None:
    dead = abandoned(client, key, ttl=2)
    started = time.monotonic()
    with Lease(client, key, owner="next", ttl=30) as taker:
        waited = time.monotonic() - started
        with pytest.raises(LeaseLost):  # past its window, and broken
            dead.check()
        dead.release()  # the dead writer's late release leaves the new lease alone
        taker.check()
    assert 2.0 <= waited < 10, waited
    assert left_behind(client, key) == []


def test_a_lease_that_keeps_changing_hands_makes_a_waiter_busy(client, key) -> None:
    # live writers taking turns: the holder id changes every 0.3 s, the lease never frees
    Lease(client, key, owner="busy writers", ttl=30).acquire()
    stop = threading.Event()

    def relay() -> None:
        while not stop.wait(0.3):
            client.set_registered_model_tag(lease_name(key), HOLDER_TAG, uuid.uuid4().hex)

    threading.Thread(target=relay, daemon=True).start()
    started = time.monotonic()
    try:
        with pytest.raises(LeaseBusy, match=r"held by busy writers on .*changed hands \(wait 1 s"):
            Lease(client, key, ttl=30, wait=1).acquire()
    finally:
        stop.set()
    assert time.monotonic() - started < 10
    assert read_lease(client, key) is not None  # never broken: it was not stale
    client.delete_registered_model(lease_name(key))


def test_a_lost_create_response_is_recognised_as_our_own_lease(client, key) -> None:
    lease = Lease(client, key, ttl=30)
    # the create landed but its response was lost: the retry finds the lease with our id
    client.create_registered_model(lease_name(key), tags={HOLDER_TAG: lease.holder})
    started = time.monotonic()
    lease.acquire()
    assert time.monotonic() - started < 2
    lease.check()
    lease.release()
    assert left_behind(client, key) == []


def test_the_holder_stops_writing_when_its_safe_window_closes(client, key) -> None:
    lease = Lease(client, key, ttl=1.5).acquire()  # window: 1 s
    lease.check()
    time.sleep(1.1)
    with pytest.raises(LeaseLost, match=r"past its safe window of 1 s \(ttl 1.5 s\)"):
        lease.check()
    lease.release()
    assert left_behind(client, key) == []


def test_a_broken_lease_is_noticed_before_the_next_write(client, key) -> None:
    lease = Lease(client, key, ttl=30).acquire()
    assert lease.record is not None
    assert retire(client, lease.record) is True  # someone broke it
    other = Lease(client, key, owner="intruder", ttl=30).acquire()
    with pytest.raises(LeaseLost, match="broken while held; now held by intruder"):
        lease.check()
    lease.release()
    other.check()  # the late release did not touch the intruder's lease
    other.release()


def test_two_breakers_of_one_stale_lease_cannot_both_win(client, key) -> None:
    stale = abandoned(client, key, ttl=30).record
    assert stale is not None
    assert retire(client, stale) is True  # the first breaker
    winner = Lease(client, key, owner="winner", ttl=30).acquire()
    assert retire(client, stale) is False  # the second, acting on what it read before
    winner.check()
    winner.release()
    assert left_behind(client, key) == []


def test_a_name_squatting_on_the_retired_name_makes_the_break_touch_nothing(client, key) -> None:
    stale = abandoned(client, key, ttl=30).record
    assert stale is not None
    client.create_registered_model(stale.tomb, tags={HOLDER_TAG: "squatter"})
    assert retire(client, stale) is False
    assert read_lease(client, key) == stale  # left in place, not deleted by name
    assert read_lease(client, key, stale.tomb).holder == "squatter"  # type: ignore[union-attr]
    for name in left_behind(client, key):
        client.delete_registered_model(name)


class SwappingClient(MlflowClient):
    """Lets another writer retire the lease and take it again right before the first rename."""

    def __init__(self, url: str, key: str) -> None:
        super().__init__(url)
        self.url = url
        self.key = key
        self.newer: Lease | None = None

    def rename_registered_model(self, name: str, new_name: str) -> object:
        if self.newer is None and name == lease_name(self.key):
            other = MlflowClient(self.url)
            record = read_lease(other, self.key)
            assert record is not None
            assert retire(other, record)
            self.newer = Lease(other, self.key, owner="newer", ttl=30).acquire()
        return super().rename_registered_model(name, new_name)


def test_a_breaker_that_renamed_a_newer_lease_gives_it_back(mlflow_url: str, key) -> None:
    client = SwappingClient(mlflow_url, key)
    stale = abandoned(client, key, ttl=30).record
    assert stale is not None
    assert retire(client, stale) is False  # it renamed the newer lease, saw so, gave it back
    assert client.newer is not None
    client.newer.check()
    client.newer.release()
    assert left_behind(client, key) == []


class VanishingHolderClient(MlflowClient):
    """The holder releases while our create is in flight, the way MLflow's SQL store then answers.

    On a name conflict the store reads the existing model back; when its holder retired it in
    between, that read fails and the create answers RESOURCE_DOES_NOT_EXIST (seen with 8 racing
    writers on PostgreSQL). The race is inside the server, so the first create here releases the
    real holder's lease and then answers as the store did.
    """

    def __init__(self, url: str, holder: Lease, error_code: int) -> None:
        super().__init__(url)
        self.holder: Lease | None = holder
        self.error_code = error_code

    def create_registered_model(self, name: str, *args: object, **kwargs: object) -> object:
        if self.holder is not None:
            self.holder.release()
            self.holder = None
            raise MlflowException(f"Registered Model with name={name} not found", self.error_code)
        return super().create_registered_model(name, *args, **kwargs)


def test_a_holder_gone_while_our_create_was_refused_lets_us_race_again(
    mlflow_url: str, client, key
) -> None:
    holder = Lease(client, key, owner="quick writer", ttl=30).acquire()
    racer = VanishingHolderClient(mlflow_url, holder, RESOURCE_DOES_NOT_EXIST)
    lease = Lease(racer, key, owner="racer", ttl=30, wait=5).acquire()
    lease.check()
    assert read_lease(client, key).holder == lease.holder
    lease.release()
    assert left_behind(client, key) == []


def test_any_other_create_failure_is_raised(mlflow_url: str, client, key) -> None:
    holder = Lease(client, key, owner="quick writer", ttl=30).acquire()
    racer = VanishingHolderClient(mlflow_url, holder, PERMISSION_DENIED)
    with pytest.raises(MlflowException, match="not found") as raised:
        Lease(racer, key, owner="racer", ttl=30, wait=5).acquire()
    assert raised.value.error_code == "PERMISSION_DENIED"
    assert left_behind(client, key) == []


def test_a_hand_made_lease_without_holder_is_broken_after_its_ttl(client, key) -> None:
    client.create_registered_model(lease_name(key), tags={TTL_TAG: "1"})
    started = time.monotonic()
    with Lease(client, key, ttl=30):
        pass
    assert 1.0 <= time.monotonic() - started < 8
    assert left_behind(client, key) == []


@pytest.fixture
def lease_warnings(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level("WARNING", logger=locks.__name__):
        yield caplog


def test_breaking_a_lease_is_logged_with_its_owner(client, key, lease_warnings) -> None:
    abandoned(client, key, ttl=1)
    with Lease(client, key, ttl=30):
        pass
    assert "breaking the lease" in lease_warnings.text
    assert "dead writer on " in lease_warnings.text
