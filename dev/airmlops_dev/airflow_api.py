"""A small client for Airflow's REST API v2 (Airflow 3), for tests, benchmarks and scripts.

Authenticates with the simple auth manager's ``POST /auth/token`` (a JWT, renewed once when a
request answers 401) and wraps the few calls the pack needs::

    client = AirflowClient("http://127.0.0.1:8080", "admin", password)
    client.wait_for_dag("iris__train")
    run_id = client.trigger("iris__train", conf={"reason": "test"})
    assert client.wait("iris__train", run_id, timeout=300) == "success"

Every error names the HTTP method, the path, the status and the response body.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import requests

if TYPE_CHECKING:
    from airmlops_dev.run_progress import TaskProgress

TERMINAL_RUN_STATES = frozenset({"success", "failed"})


class AirflowAPIError(RuntimeError):
    """An Airflow REST call failed.

    Attributes:
        status: The HTTP status (0 when the server could not be reached).
        body: The response body (text).
    """

    def __init__(self, message: str, status: int = 0, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


def _seg(value: str) -> str:
    """Quote one URL path segment (run ids contain ':' and '+')."""
    return quote(value, safe="")


class AirflowClient:
    """REST v2 client with JWT authentication.

    Args:
        base_url: The api-server's base URL, e.g. ``http://127.0.0.1:8080``.
        username: A simple-auth-manager user.
        password: Its password.
        timeout: Seconds per HTTP request.
        progress: When set, ``wait`` also lists the run's tasks at every poll and passes them
            on (airmlops_dev.run_progress: one line per task state change).
    """

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        timeout: float = 30.0,
        progress: TaskProgress | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.progress = progress
        self.username = username
        self._password = password
        self.timeout = timeout
        self._token: str | None = None
        self._http = requests.Session()

    def __repr__(self) -> str:
        return f"AirflowClient({self.base_url!r}, user={self.username!r})"

    # Transport -------------------------------------------------------------------------------
    def _fail(self, method: str, path: str, resp: requests.Response) -> AirflowAPIError:
        body = resp.text[:2000]
        return AirflowAPIError(
            f"{method} {path} -> HTTP {resp.status_code}: {body}", resp.status_code, body
        )

    def token(self, refresh: bool = False) -> str:
        """A JWT for the API, fetched from ``POST /auth/token`` once and cached.

        Args:
            refresh: Fetch a new token even when one is cached.

        Returns:
            The access token.
        """
        if self._token is None or refresh:
            path = "/auth/token"
            try:
                resp = self._http.post(
                    self.base_url + path,
                    json={"username": self.username, "password": self._password},
                    timeout=self.timeout,
                )
            except requests.RequestException as exc:
                raise AirflowAPIError(f"POST {path} failed: {exc}") from exc
            if resp.status_code not in (200, 201):
                raise self._fail("POST", path, resp)
            self._token = resp.json()["access_token"]
        return self._token

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        ok: tuple[int, ...] = (200, 201, 204),
    ) -> Any:
        """Send an authenticated request.

        Args:
            method: HTTP method.
            path: Path below the base URL, e.g. ``/api/v2/dags``.
            json: JSON body.
            params: Query parameters.
            ok: Statuses that count as success.

        Returns:
            The decoded JSON body (None for an empty body).

        Raises:
            AirflowAPIError: Any other status, or the server is unreachable.
        """
        resp = None
        for attempt in range(2):
            headers = {"Authorization": f"Bearer {self.token(refresh=attempt > 0)}"}
            try:
                resp = self._http.request(
                    method,
                    self.base_url + path,
                    json=json,
                    params=params,
                    headers=headers,
                    timeout=self.timeout,
                )
            except requests.RequestException as exc:
                raise AirflowAPIError(f"{method} {path} failed: {exc}") from exc
            if resp.status_code != 401:
                break
        assert resp is not None
        if resp.status_code not in ok:
            raise self._fail(method, path, resp)
        if not resp.content:
            return None
        return resp.json()

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """``GET`` a path (e.g. ``/api/v2/pools``) and return the decoded JSON."""
        return self.request("GET", path, params=params)

    # DAGs and runs ---------------------------------------------------------------------------
    def dag(self, dag_id: str) -> dict[str, Any]:
        """The DAG's REST representation (raises with status 404 when unknown)."""
        return self.get(f"/api/v2/dags/{_seg(dag_id)}")

    def unpause(self, dag_id: str) -> dict[str, Any]:
        """Unpause a DAG."""
        return self.request("PATCH", f"/api/v2/dags/{_seg(dag_id)}", json={"is_paused": False})

    def trigger(
        self, dag_id: str, conf: dict[str, Any] | None = None, run_id: str | None = None
    ) -> str:
        """Trigger a manual run now.

        Args:
            dag_id: The DAG.
            conf: Run configuration (``dag_run.conf``).
            run_id: An explicit run id; Airflow generates one when omitted.

        Returns:
            The run id.
        """
        body: dict[str, Any] = {"logical_date": None, "conf": conf or {}}
        if run_id:
            body["dag_run_id"] = run_id
        run = self.request("POST", f"/api/v2/dags/{_seg(dag_id)}/dagRuns", json=body)
        return run["dag_run_id"]

    def dag_runs(self, dag_id: str, states: list[str] | None = None) -> list[dict[str, Any]]:
        """Runs of a DAG, oldest first, optionally only those in `states`."""
        params: dict[str, Any] = {"order_by": "run_after"}
        if states:
            params["state"] = states
        return self.get(f"/api/v2/dags/{_seg(dag_id)}/dagRuns", params=params)["dag_runs"]

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """One DAG run."""
        return self.get(f"/api/v2/dags/{_seg(dag_id)}/dagRuns/{_seg(run_id)}")

    def wait(self, dag_id: str, run_id: str, timeout: float = 300.0, poll: float = 1.0) -> str:
        """Poll a run until it finishes.

        Args:
            dag_id: The DAG.
            run_id: The run.
            timeout: Seconds to wait.
            poll: Seconds between polls.

        Returns:
            The final state (``success`` or ``failed``).

        Raises:
            TimeoutError: Still not finished after ``timeout``; names the last state and the
                task states.
        """
        deadline = time.monotonic() + timeout
        state = "unknown"
        while time.monotonic() < deadline:
            state = self.dag_run(dag_id, run_id)["state"]
            if self.progress is not None:
                self.progress.run_state(dag_id, run_id, state)
                self.progress.update(dag_id, run_id, self.task_instances(dag_id, run_id))
            if state in TERMINAL_RUN_STATES:
                return state
            time.sleep(poll)
        tasks = {t["task_id"]: t["state"] for t in self.task_instances(dag_id, run_id)}
        raise TimeoutError(
            f"{dag_id} run {run_id} still {state!r} after {timeout:.0f}s; tasks: {tasks}"
        )

    def wait_for_dag(self, dag_id: str, timeout: float = 120.0, poll: float = 1.0) -> dict:
        """Wait until the DAG has been parsed and is visible through the API.

        Raises:
            TimeoutError: Not visible in time; the message lists the current import errors.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.dag(dag_id)
            except AirflowAPIError as exc:
                if exc.status != 404:
                    raise
            if time.monotonic() > deadline:
                errors = [
                    f"{e.get('filename')}: {str(e.get('stack_trace', '')).strip()[-500:]}"
                    for e in self.import_errors()
                ]
                raise TimeoutError(
                    f"DAG {dag_id} not visible after {timeout:.0f}s; import errors: {errors}"
                )
            time.sleep(poll)

    def wait_for_new_run(
        self, dag_id: str, known: set[str], timeout: float = 180.0, poll: float = 1.0
    ) -> str:
        """The first run of dag_id not in `known` (e.g. one an Asset event triggered)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            new = sorted(
                r["dag_run_id"] for r in self.dag_runs(dag_id) if r["dag_run_id"] not in known
            )
            if new:
                return new[0]
            time.sleep(poll)
        raise TimeoutError(f"no new run of {dag_id} within {timeout:.0f}s")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The task instances of a run (mapped ones included)."""
        path = f"/api/v2/dags/{_seg(dag_id)}/dagRuns/{_seg(run_id)}/taskInstances"
        return self._paged(path, "task_instances")

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """A task's XCom value (deserialized), e.g. a check task's summary."""
        path = (
            f"/api/v2/dags/{_seg(dag_id)}/dagRuns/{_seg(run_id)}/taskInstances/"
            f"{_seg(task_id)}/xcomEntries/{_seg(key)}"
        )
        value = self.get(path)["value"]
        if isinstance(value, str):  # stored as serialized JSON text
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value

    def respond(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        options: list[str],
        params_input: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Answer a human-in-the-loop task (e.g. ``["Approve"]``) as this client's user."""
        path = (
            f"/api/v2/dags/{_seg(dag_id)}/dagRuns/{_seg(run_id)}/taskInstances/"
            f"{_seg(task_id)}/-1/hitlDetails"
        )
        return dict(
            self.request(
                "PATCH", path, json={"chosen_options": options, "params_input": params_input or {}}
            )
        )

    def asset_event(self, name: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Record an event for the Asset named `name` (e.g. ``model/m/landing``): what an
        external system does when a batch lands; DAGs scheduled on the Asset then run."""
        found = [
            a
            for a in self._paged("/api/v2/assets?name_pattern=" + quote(name, safe=""), "assets")
            if a["name"] == name
        ]
        if not found:
            raise AirflowAPIError(f"no asset named {name!r}: is a DAG scheduled on it parsed?")
        return dict(
            self.request(
                "POST",
                "/api/v2/assets/events",
                json={"asset_id": found[0]["id"], "extra": extra or {}},
            )
        )

    def clear_run(self, dag_id: str, run_id: str) -> None:
        """Clear every task of a run so that it runs again (a re-run of the same DAG run)."""
        self.request(
            "POST",
            f"/api/v2/dags/{_seg(dag_id)}/dagRuns/{_seg(run_id)}/clear",
            json={"dry_run": False},
        )

    def import_errors(self) -> list[dict[str, Any]]:
        """Current DAG import errors."""
        return self._paged("/api/v2/importErrors", "import_errors")

    def _paged(self, path: str, key: str, page: int = 100) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        while True:
            data = self.get(path, params={"limit": page, "offset": len(items)})
            batch = data.get(key, [])
            items.extend(batch)
            if not batch or len(items) >= data.get("total_entries", 0):
                return items
