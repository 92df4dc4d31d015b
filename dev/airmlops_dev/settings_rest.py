"""Load validated settings through Airflow's REST API bulk endpoints (no metadata-DB access).

Managed Airflow (Astronomer, MWAA, Cloud Composer) exposes the REST API, not the metadata
database; ``PATCH /api/v2/{connections,pools,variables}`` with one ``create`` action and
``action_on_existence: overwrite`` is the same upsert as :func:`settings_loader.apply_settings`.
Error messages name the entity and the status, never a request or response body (a 422 body
echoes the input, passwords included).
"""

from __future__ import annotations

import json
from typing import Any

from airmlops_dev.airflow_api import AirflowAPIError, AirflowClient
from airmlops_dev.settings_loader import Settings, SettingsError

ENDPOINTS = {
    "connections": "/api/v2/connections",
    "pools": "/api/v2/pools",
    "variables": "/api/v2/variables",
}


def bulk_bodies(settings: Settings) -> dict[str, dict[str, Any]]:
    """The bulk request body per section (sections with no entries are left out).

    Args:
        settings: The validated settings.

    Returns:
        ``{"connections": body, ...}`` for each non-empty section.
    """
    entities: dict[str, list[dict[str, Any]]] = {
        "connections": [
            {
                "connection_id": c.conn_id,
                "conn_type": c.conn_type,
                "host": c.host,
                "schema": c.schema,
                "login": c.login,
                "password": c.password,
                "port": c.port,
                "extra": json.dumps(c.extra) if c.extra else None,
            }
            for c in settings.connections
        ],
        "pools": [
            {"name": p.name, "slots": p.slots, "description": p.description} for p in settings.pools
        ],
        "variables": [{"key": v.key, "value": v.value} for v in settings.variables],
    }
    return {
        section: {
            "actions": [{"action": "create", "entities": items, "action_on_existence": "overwrite"}]
        }
        for section, items in entities.items()
        if items
    }


def _redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def apply_settings_rest(settings: Settings, client: AirflowClient) -> dict[str, int]:
    """Upsert connections, pools and variables through the REST API.

    Args:
        settings: What to write.
        client: An authenticated client of the target Airflow.

    Returns:
        How many connections, pools and variables were written.

    Raises:
        SettingsError: A request failed or Airflow reported an error for an entity; the message
            names the section, the status and the entity, with every secret value redacted.
    """
    secrets = [c.password for c in settings.connections if c.password]
    written = {section: 0 for section in ENDPOINTS}
    for section, body in bulk_bodies(settings).items():
        path = ENDPOINTS[section]
        try:
            result = client.request("PATCH", path, json=body)
        except AirflowAPIError as exc:
            raise SettingsError(
                f"PATCH {path} ({section}) was refused with HTTP {exc.status}"
                + ("" if section == "connections" else f": {_redact(exc.body[:500], secrets)}")
            ) from None
        outcome = (result or {}).get("create") or {}
        errors = outcome.get("errors") or []
        if errors:
            detail = "; ".join(_redact(str(e.get("error", e)), secrets) for e in errors)
            raise SettingsError(f"{section}: Airflow refused {len(errors)} entries: {detail}")
        written[section] = len(outcome.get("success") or [])
    return written
