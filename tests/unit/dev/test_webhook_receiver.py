"""The Slack stand-in: recording, Slack-like answers, failure modes (in-process server)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import requests
from slack_sdk.webhook import WebhookClient

from airmlops_dev import webhook_receiver
from airmlops_dev.webhook_receiver import ReceiverServer, parse_body, read_messages


def test_post_is_recorded_and_answered_like_slack(receiver: ReceiverServer) -> None:
    resp = requests.post(
        receiver.url + "/services/T000/B000/local", json={"text": "héllo"}, timeout=5
    )
    assert (resp.status_code, resp.text) == (200, "ok")
    [message] = read_messages(receiver.out)
    assert message["path"] == "/services/T000/B000/local"
    assert message["body"] == {"text": "héllo"}
    assert message["status"] == 200
    assert message["received_at"].endswith("+00:00")


def test_real_slack_client_delivers(receiver: ReceiverServer) -> None:
    client = WebhookClient(url=receiver.url + "/services/T000/B000/local", timeout=5)
    response = client.send(text="from slack_sdk", blocks=[{"type": "divider"}])
    assert (response.status_code, response.body) == (200, "ok")
    [message] = read_messages(receiver.out)
    assert message["body"]["text"] == "from slack_sdk"
    assert message["body"]["blocks"] == [{"type": "divider"}]


def test_form_payload_and_raw_text_bodies(receiver: ReceiverServer) -> None:
    requests.post(receiver.url + "/a", data={"payload": json.dumps({"text": "form"})}, timeout=5)
    requests.post(receiver.url + "/b", data=b"\xffplain text", timeout=5)
    form, raw = read_messages(receiver.out)
    assert form["body"] == {"text": "form"}
    assert raw["path"] == "/b"
    assert raw["body"] == "\ufffdplain text"


def test_health_and_messages_endpoints(receiver: ReceiverServer) -> None:
    assert requests.get(receiver.url + "/health", timeout=5).text == "ok"
    assert requests.get(receiver.url + "/messages", timeout=5).json() == []
    requests.post(receiver.url + "/x", json={"n": 1}, timeout=5)
    requests.post(receiver.url + "/y", json={"n": 2}, timeout=5)
    listed = requests.get(receiver.url + "/messages", timeout=5).json()
    assert [m["body"]["n"] for m in listed] == [1, 2]
    assert requests.get(receiver.url + "/nope", timeout=5).status_code == 404


def test_error500_mode(receiver: ReceiverServer) -> None:
    receiver.mode = "error500"
    resp = requests.post(receiver.url + "/s", json={"text": "x"}, timeout=5)
    assert resp.status_code == 500
    assert read_messages(receiver.out)[0]["status"] == 500  # the attempt is still recorded


def test_ratelimit_mode_sends_retry_after(receiver: ReceiverServer) -> None:
    receiver.mode = "ratelimit429"
    resp = requests.post(receiver.url + "/s", json={"text": "x"}, timeout=5)
    assert resp.status_code == 429
    assert resp.headers["Retry-After"] == "1"
    assert requests.get(receiver.url + "/health", timeout=5).status_code == 200


def test_hang_mode_never_answers_but_health_does(receiver: ReceiverServer) -> None:
    receiver.mode = "hang"
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(receiver.url + "/s", json={"text": "x"}, timeout=0.5)
    assert time.monotonic() - started < 3
    assert requests.get(receiver.url + "/health", timeout=5).status_code == 200
    assert read_messages(receiver.out)[0]["status"] == 0


def test_mode_can_be_switched_over_http(receiver: ReceiverServer) -> None:
    assert requests.put(receiver.url + "/mode", data="error500", timeout=5).status_code == 200
    assert requests.post(receiver.url + "/s", json={}, timeout=5).status_code == 500
    assert requests.put(receiver.url + "/mode", data="bogus", timeout=5).status_code == 400
    assert requests.put(receiver.url + "/mode", data="ok", timeout=5).status_code == 200
    assert requests.post(receiver.url + "/s", json={}, timeout=5).status_code == 200


def test_concurrent_posts_give_whole_lines(receiver: ReceiverServer) -> None:
    def post(i: int) -> None:
        requests.post(receiver.url + "/c", json={"i": i, "pad": "x" * 5000}, timeout=10)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = receiver.out.read_text().splitlines()
    assert len(lines) == 20
    assert sorted(json.loads(line)["body"]["i"] for line in lines) == list(range(20))


def test_read_messages_skips_missing_file_and_partial_lines(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    assert read_messages(path) == []
    path.write_text('{"path": "/a", "body": 1}\n\n{"path": "/b", "bo')
    assert read_messages(path) == [{"path": "/a", "body": 1}]


def test_parse_body_variants() -> None:
    assert parse_body(b'{"a": 1}') == {"a": 1}
    assert parse_body(b"[1, 2]") == [1, 2]
    assert parse_body(b"payload=%7B%22t%22%3A1%7D", "application/x-www-form-urlencoded") == {"t": 1}
    assert parse_body(b"hello") == "hello"


def test_unknown_mode_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown mode"):
        ReceiverServer(("127.0.0.1", 0), tmp_path / "m.jsonl", mode="flaky")
    with pytest.raises(SystemExit):
        webhook_receiver.main(["--out", str(tmp_path / "m.jsonl"), "--mode", "flaky"])
