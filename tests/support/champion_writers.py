"""Writers of `champion` in processes of their own, for the lease tests.

Started with multiprocessing's spawn: each is a fresh interpreter that shares nothing with the
others but the MLflow tracking server, like Celery workers on other hosts or a laptop's CLI.
"""

from __future__ import annotations

import json
import time
from typing import Any

from mlflow import MlflowClient

from airmlops_core.errors import PromotionConflict
from airmlops_core.tracking import registry

WRITER_TAG = "race.writer"


def race(url: str, name: str, version: str, barrier: Any, results: Any) -> None:
    """Read `champion`, wait for every other writer, then move it to `version`.

    Puts (outcome, version, the champion it read, detail) on `results`: outcome is `moved`
    (detail: the AliasMove as JSON), `conflict` (the PromotionConflict message) or `error`.
    """
    client = MlflowClient(url)
    expected = registry.alias_version(client, name, registry.CHAMPION)
    barrier.wait(timeout=600)
    try:
        move = registry.move_champion(
            client,
            name,
            version,
            expected_champion=expected,
            tags={WRITER_TAG: version},
            owner=f"racer {version}",
        )
    except PromotionConflict as exc:
        results.put(("conflict", version, expected, str(exc)))
    except Exception as exc:  # reported to the test, which fails on it
        results.put(("error", version, expected, repr(exc)))
    else:
        results.put(("moved", version, expected, json.dumps(move.to_dict())))


class StallingClient(MlflowClient):
    """A client that stops for good right before it would point `champion` anywhere."""

    def __init__(self, url: str, reached: Any) -> None:
        super().__init__(url)
        self.reached = reached

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        """Set the alias, unless it is `champion`: then signal `reached` and hang."""
        if alias == registry.CHAMPION:
            self.reached.set()
            time.sleep(3600)
        super().set_registered_model_alias(name, alias, version)


def die_mid_move(url: str, name: str, version: str, ttl: float, reached: Any) -> None:
    """Move `champion` to `version` with a lease of `ttl` s, hanging before the last write."""
    client = StallingClient(url, reached)
    expected = registry.alias_version(client, name, registry.CHAMPION)
    registry.move_champion(
        client, name, version, expected_champion=expected, owner="doomed writer", lease_ttl=ttl
    )
