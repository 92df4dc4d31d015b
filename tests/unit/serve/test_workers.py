"""Several worker processes: counted as one API, each swapping safely, a crashed one replaced.

A real API with `--workers 2` over the real registry. Requests on fresh connections spread over
both workers (each worker's own metrics file proves it got some); /metrics adds them up to
exactly the number sent. Both workers follow the alias, and neither serves a version that
failed its check. A killed worker is restarted by uvicorn's supervisor, its counts stay in the
sums and its live gauges leave /metrics. The security limits hold in every worker.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, multiprocess
from prometheus_client.parser import text_string_to_metric_families

from airmlops_core.serve import workers
from airmlops_core.serve.metrics import PREFIX
from model_api_process import FEATURES, MODEL, Api, Registry, frame, records

K = 40


def samples(api: Api, name: str) -> list[tuple[dict[str, str], float]]:
    text = api.http.get("/metrics").text
    return [
        (s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    ]


def ok_requests(api: Api) -> float:
    return sum(
        v
        for labels, v in samples(api, f"{PREFIX}requests_total")
        if labels == {"model": MODEL, "status": "200"}
    )


def per_worker_counts(tmp_path: Path, scratch: Path) -> dict[str, float]:
    """200 answers counted by each worker, read from its own file in the multiprocess dir."""
    (metrics_dir,) = tmp_path.glob("airmlops-model-api-*/metrics")
    counts = {}
    for path in metrics_dir.glob("counter_*.db"):
        alone = scratch / path.stem
        alone.mkdir(parents=True)
        shutil.copy(path, alone / path.name)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(alone))
        labels = {"model": MODEL, "status": "200"}
        counts[path.stem] = registry.get_sample_value(f"{PREFIX}requests_total", labels) or 0.0
    return counts


def test_default_is_one_worker_per_core() -> None:
    assert workers.default_workers() == len(os.sched_getaffinity(0))


@pytest.mark.integration
def test_two_workers_count_as_one_swap_safely_and_survive_a_crash(
    registry: Registry, tmp_path: Path
) -> None:
    registry.set_champion("1")
    run_tmp = tmp_path / "run"
    run_tmp.mkdir()
    api = Api(
        registry.url,
        MODEL,
        tmp_path / "api.log",
        "--workers",
        "2",
        "--max-rows",
        "5",
        env={"TMPDIR": str(run_tmp)},
    )
    try:
        api.wait_served("1", workers=2)
        body = api.status()[1]
        pids = set(body["workers"])
        assert len(pids) == 2, body
        assert str(api.proc.pid) not in pids, body
        assert str(body["worker"]) in pids

        # the limits and the token, in whichever worker answers
        rows = frame(3, 6)[FEATURES]
        for _ in range(4):
            assert api.anonymous.post(f"/invocations/{MODEL}", json={}).status_code == 401
            assert api.anonymous.get("/metrics").status_code == 401
            assert api.anonymous.get("/status").status_code == 401
            r = api.http.post(f"/invocations/{MODEL}", json={"dataframe_records": records(rows)})
            assert (r.status_code, r.json()["error_code"]) == (413, "TOO_MANY_ROWS")

        def one(i: int) -> int:
            body = {"dataframe_records": records(rows.iloc[[i % 5]])}
            with httpx.Client(base_url=api.base, headers=api.http.headers, timeout=60) as c:
                return c.post(f"/invocations/{MODEL}", json=body).status_code

        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(one, range(K))) == [200] * K
        assert ok_requests(api) == K
        counts = per_worker_counts(run_tmp, tmp_path / "scratch")
        assert len(counts) == 2, counts
        assert sum(counts.values()) == K, counts
        assert min(counts.values()) > 0, f"one worker answered everything: {counts}"
        served = samples(api, f"{PREFIX}served_version")
        assert sorted(labels["pid"] for labels, _ in served) == sorted(pids), served
        assert [v for _, v in samples(api, f"{PREFIX}model_loaded")] == [1.0]

        # every worker swaps to a good version, and none serves one that fails its check
        registry.set_champion("2")
        api.wait_served("2", workers=2)
        registry.set_champion("4")  # loads, then fails its golden request
        api.wait(
            lambda: (
                all(
                    "version 4" in (w["models"][MODEL]["problem"] or "")
                    for w in api.status()[1]["workers"].values()
                )
                and len(api.status()[1]["workers"]) == 2
            ),
            "both workers refusing version 4",
        )
        assert api.served_versions() == ["2", "2"]
        one_row = {"dataframe_records": records(rows[:1])}
        for _ in range(10):
            r = api.http.post(f"/invocations/{MODEL}", json=one_row)
            assert r.headers["X-Model-Version"] == "2"
        registry.set_champion("1")
        api.wait_served("1", workers=2)

        # a killed worker is replaced; its counts stay, its live gauges go
        before = ok_requests(api)
        victim = int(sorted(pids)[0])
        os.kill(victim, signal.SIGKILL)
        api.wait(
            lambda: (
                len(api.served_versions()) == 2
                and str(victim) not in api.status()[1]["workers"]
                and api.served_versions() == ["1", "1"]
            ),
            "the killed worker replaced and serving",
            timeout=120,
        )
        assert ok_requests(api) == before
        served = samples(api, f"{PREFIX}served_version")
        assert str(victim) not in {labels["pid"] for labels, _ in served}, served
        assert len(served) == 2, served
    finally:
        registry.set_champion("1")
        api.stop()
    api.assert_clean_exit()
    deadline = time.monotonic() + 10
    while list(run_tmp.glob("airmlops-model-api-*")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not list(run_tmp.glob("airmlops-model-api-*")), "the metrics dir was left behind"
