"""The timeline of `make up`: install steps from the Makefile's file, phases, table, JSON."""

from __future__ import annotations

import json
import stat

from airmlops_dev import up_timeline
from airmlops_dev.up_timeline import Timeline, format_seconds, install_phases


def test_format_seconds() -> None:
    assert format_seconds(4.26) == "4.3s"
    assert format_seconds(42.4) == "42s"
    assert format_seconds(185) == "3m05s"
    assert format_seconds(-1) == "0.0s"


def test_install_phases_of_this_make_only(tmp_path) -> None:
    (tmp_path / up_timeline.INSTALL_PHASES_FILE).write_text(
        "virtualenv and uv 1000 1013\n"
        "locked packages 1013 1040\n"
        "the pack (editable) 1040 1042\n"
        "garbage line\n"
        "older step 500 510\n"
    )
    phases = install_phases(tmp_path, since=1000)
    assert [(p.name, p.seconds) for p in phases] == [
        ("install: virtualenv and uv", 13),
        ("install: locked packages", 27),
        ("install: the pack (editable)", 2),
    ]
    assert install_phases(tmp_path / "missing", since=0) == []


def test_table_offsets_durations_and_shares(tmp_path) -> None:
    timeline = Timeline(started=100.0)
    timeline.add("install: locked packages", 100.0, 130.0)
    timeline.add("demo: train", 150.0, 250.0)
    timeline.add("  run a__train", 160.0, 200.0, state="success", tasks={"t": {"state": "success"}})
    rows = timeline.table(now=250.0).splitlines()
    assert rows[1].split() == ["install:", "locked", "packages", "0.0s", "30s", "20%"]
    assert rows[2].split() == ["demo:", "train", "50s", "1m40s", "67%"]
    assert rows[3].split() == ["run", "a__train", "1m00s", "40s", "27%"]
    assert rows[-1].split() == ["total", "2m30s"]
    path = tmp_path / "up_timeline.json"
    timeline.write(path)
    written = json.loads(path.read_text())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert written["phases"][2]["detail"]["tasks"] == {"t": {"state": "success"}}
    assert [p["offset_s"] for p in written["phases"]] == [0.0, 50.0, 60.0]


def test_phase_is_recorded_when_the_block_raises() -> None:
    timeline = Timeline(started=0.0)
    try:
        with timeline.phase("fails"):
            raise ValueError("boom")
    except ValueError:
        pass
    assert [p.name for p in timeline.phases] == ["fails"]
    assert timeline.phases[0].end >= timeline.phases[0].start


def test_clock_start_from_make(monkeypatch) -> None:
    monkeypatch.setenv(up_timeline.MAKE_STARTED_ENV, "1234.5")
    assert up_timeline.clock_start() == 1234.5
    monkeypatch.setenv(up_timeline.MAKE_STARTED_ENV, "not a time")
    assert up_timeline.clock_start() == up_timeline._PROCESS_STARTED
