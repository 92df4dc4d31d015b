"""Messages the local Slack stand-in received, waited for by what they mention."""

from __future__ import annotations

import json
import time
from typing import Any

from airmlops_dev.webhook_receiver import read_messages


def messages_about(stack: Any, subject: str, marker: str, timeout: float = 60) -> list[dict]:
    """Messages whose body mentions both `subject` (a DAG id or run id) and `marker`, waiting
    up to `timeout` seconds for at least one to arrive."""
    deadline = time.monotonic() + timeout
    while True:
        found = [
            m
            for m in read_messages(stack.messages_file)
            if subject in json.dumps(m["body"]) and marker in json.dumps(m["body"])
        ]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(1)
