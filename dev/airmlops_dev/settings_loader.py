"""Load an Astro-CLI style ``airflow_settings.yaml`` into the Airflow metadata DB.

The file format (the one ``astro dev init`` writes)::

    airflow:
      connections:
        - conn_id: slack_alerts
          conn_type: slackwebhook
          conn_host:
          conn_schema:
          conn_login:
          conn_password: http://127.0.0.1:8099/services/T000/B000/local
          conn_port:
          conn_extra: {}
      pools:
        - pool_name: ml_training
          pool_slot: 2
          pool_description: Training tasks
      variables:
        - variable_name: airmlops_environment
          variable_value: local

Entries whose fields are all empty are skipped (Astro's template ships such placeholders). Loading
is an upsert in one transaction: existing connections, pools and variables are updated, nothing is
duplicated, and entries that are not in the file are left alone. Secrets are never logged.

Run it in the Airflow environment (AIRFLOW_HOME and the DB settings of the target Airflow)::

    python -m airmlops_dev.settings_loader airflow_settings.yaml

or, where the metadata database is out of reach (managed Airflow), through the REST API's bulk
endpoints, with the API user's credentials in the environment (AIRFLOW_API_USER and
AIRFLOW_API_PASSWORD, never on the command line)::

    python -m airmlops_dev.settings_loader airflow_settings.yaml --api-url https://airflow.example

Parsing needs no Airflow; ``apply_settings`` imports Airflow's ORM models when called.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

CONNECTION_KEYS = (
    "conn_id",
    "conn_type",
    "conn_host",
    "conn_schema",
    "conn_login",
    "conn_password",
    "conn_port",
    "conn_extra",
)
POOL_KEYS = ("pool_name", "pool_slot", "pool_description")
VARIABLE_KEYS = ("variable_name", "variable_value")
SECTIONS = {"connections": CONNECTION_KEYS, "pools": POOL_KEYS, "variables": VARIABLE_KEYS}


class SettingsError(ValueError):
    """The settings file is missing or does not follow the Astro format."""


@dataclass(frozen=True)
class ConnectionSetting:
    """One Airflow connection from the settings file (the password is kept out of repr)."""

    conn_id: str
    conn_type: str
    host: str | None = None
    schema: str | None = None
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    port: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PoolSetting:
    """One Airflow pool."""

    name: str
    slots: int
    description: str = ""


@dataclass(frozen=True)
class VariableSetting:
    """One Airflow variable (values are stored as strings)."""

    key: str
    value: str = field(repr=False)


@dataclass(frozen=True)
class Settings:
    """Everything a settings file declares."""

    connections: tuple[ConnectionSetting, ...] = ()
    pools: tuple[PoolSetting, ...] = ()
    variables: tuple[VariableSetting, ...] = ()


def _text(value: Any, where: str, key: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool | int | float | str):
        text = str(value).strip()
        return text or None
    raise SettingsError(f"{where}: {key} must be a scalar, got {type(value).__name__}")


def _required(value: Any, where: str, key: str) -> str:
    text = _text(value, where, key)
    if not text:
        raise SettingsError(f"{where}: {key} is required")
    return text


def _integer(value: Any, where: str, key: str, minimum: int) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise SettingsError(f"{where}: {key} must be an integer, got {value!r}")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise SettingsError(f"{where}: {key} must be an integer, got {value!r}") from None
    if number < minimum:
        raise SettingsError(f"{where}: {key} must be >= {minimum}, got {number}")
    return number


def _extra(value: Any, where: str) -> dict[str, Any]:
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise SettingsError(f"{where}: conn_extra must be a mapping or a JSON object") from None
    if not isinstance(value, dict):
        raise SettingsError(f"{where}: conn_extra must be a mapping, got {type(value).__name__}")
    return value


def _variable_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | dict | list):
        return json.dumps(value)
    return str(value)


def _entries(section: Any, name: str, keys: tuple[str, ...], source: str) -> list[dict[str, Any]]:
    if section is None:
        return []
    if not isinstance(section, list):
        raise SettingsError(
            f"{source}: airflow.{name} must be a list, got {type(section).__name__}"
        )
    entries = []
    for i, item in enumerate(section):
        where = f"{source}: airflow.{name}[{i}]"
        if item is None:
            continue
        if not isinstance(item, dict):
            raise SettingsError(f"{where} must be a mapping, got {type(item).__name__}")
        unknown = sorted(set(item) - set(keys))
        if unknown:
            raise SettingsError(
                f"{where}: unknown key(s) {', '.join(map(str, unknown))}; "
                f"expected {', '.join(keys)}"
            )
        if all(v is None or v == "" or v == {} for v in item.values()):
            continue  # an empty placeholder, as in Astro's template
        entries.append({"_where": where, **item})
    return entries


def _no_duplicates(names: list[str], kind: str, source: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise SettingsError(f"{source}: {kind} {name!r} is declared more than once")
        seen.add(name)


def parse_settings(data: Any, source: str = "<settings>") -> Settings:
    """Validate parsed YAML in the Astro format.

    Args:
        data: The parsed document (``yaml.safe_load`` output).
        source: A name for error messages (the file path).

    Returns:
        The validated settings.

    Raises:
        SettingsError: The document does not follow the format; the message names the entry
            and the key, never a secret value.
    """
    if data is None:
        return Settings()
    if not isinstance(data, dict):
        raise SettingsError(f"{source}: expected a mapping with an 'airflow' key")
    unknown = sorted(set(data) - {"airflow"})
    if unknown:
        raise SettingsError(f"{source}: unknown top-level key(s) {', '.join(map(str, unknown))}")
    root = data.get("airflow")
    if root is None:
        return Settings()
    if not isinstance(root, dict):
        raise SettingsError(f"{source}: 'airflow' must be a mapping")
    unknown = sorted(set(root) - set(SECTIONS))
    if unknown:
        raise SettingsError(
            f"{source}: unknown section(s) airflow.{', airflow.'.join(map(str, unknown))}; "
            f"expected {', '.join(SECTIONS)}"
        )

    connections = []
    for e in _entries(root.get("connections"), "connections", CONNECTION_KEYS, source):
        w = e["_where"]
        connections.append(
            ConnectionSetting(
                conn_id=_required(e.get("conn_id"), w, "conn_id"),
                conn_type=_required(e.get("conn_type"), w, "conn_type"),
                host=_text(e.get("conn_host"), w, "conn_host"),
                schema=_text(e.get("conn_schema"), w, "conn_schema"),
                login=_text(e.get("conn_login"), w, "conn_login"),
                password=_text(e.get("conn_password"), w, "conn_password"),
                port=_integer(e.get("conn_port"), w, "conn_port", minimum=1),
                extra=_extra(e.get("conn_extra"), w),
            )
        )
    pools = []
    for e in _entries(root.get("pools"), "pools", POOL_KEYS, source):
        w = e["_where"]
        slots = _integer(e.get("pool_slot"), w, "pool_slot", minimum=-1)
        if slots is None:
            raise SettingsError(f"{w}: pool_slot is required")
        pools.append(
            PoolSetting(
                name=_required(e.get("pool_name"), w, "pool_name"),
                slots=slots,
                description=_text(e.get("pool_description"), w, "pool_description") or "",
            )
        )
    variables = [
        VariableSetting(
            key=_required(e.get("variable_name"), e["_where"], "variable_name"),
            value=_variable_value(e.get("variable_value")),
        )
        for e in _entries(root.get("variables"), "variables", VARIABLE_KEYS, source)
    ]
    _no_duplicates([c.conn_id for c in connections], "connection", source)
    _no_duplicates([p.name for p in pools], "pool", source)
    _no_duplicates([v.key for v in variables], "variable", source)
    return Settings(tuple(connections), tuple(pools), tuple(variables))


def load_settings_file(path: str | Path) -> Settings:
    """Read and validate a settings file.

    Args:
        path: The YAML file.

    Returns:
        The validated settings.

    Raises:
        SettingsError: The file is missing, is not valid YAML, or breaks the format.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"cannot read settings file {p}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SettingsError(f"{p}: not valid YAML: {exc}") from exc
    return parse_settings(data, source=str(p))


def apply_settings(settings: Settings) -> dict[str, int]:
    """Upsert connections, pools and variables into the metadata DB in one transaction.

    Args:
        settings: What to write.

    Returns:
        How many connections, pools and variables were written.
    """
    # The metadata-DB ORM models, not the airflow.sdk classes of the same names: this runs
    # outside any task, against the DB directly.
    from airflow.models.connection import Connection
    from airflow.models.pool import Pool
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        for c in settings.connections:
            conn = session.scalar(select(Connection).where(Connection.conn_id == c.conn_id))
            created = conn is None
            if conn is None:
                conn = Connection(conn_id=c.conn_id, conn_type=c.conn_type)
                session.add(conn)
            conn.conn_type = c.conn_type
            conn.host = c.host
            conn.schema = c.schema
            conn.login = c.login
            conn.port = c.port
            if c.password:
                conn.password = c.password
            else:  # set_password(None) would keep the old value
                conn._password = None
                conn.is_encrypted = False
            if c.extra:
                conn.extra = json.dumps(c.extra)
            else:
                conn._extra = None
                conn.is_extra_encrypted = False
            action = "created" if created else "updated"
            log.info("%s connection %s (%s)", action, c.conn_id, c.conn_type)
        for p in settings.pools:
            Pool.create_or_update_pool(
                p.name, p.slots, p.description, include_deferred=False, session=session
            )
            log.info("upserted pool %s (%d slots)", p.name, p.slots)
        for v in settings.variables:
            Variable.set(v.key, v.value, session=session)
            log.info("upserted variable %s", v.key)
    return {
        "connections": len(settings.connections),
        "pools": len(settings.pools),
        "variables": len(settings.variables),
    }


def _apply_rest(settings: Settings, api_url: str) -> dict[str, int]:
    from airmlops_dev.airflow_api import AirflowAPIError, AirflowClient
    from airmlops_dev.settings_rest import apply_settings_rest

    user, password = os.environ.get("AIRFLOW_API_USER"), os.environ.get("AIRFLOW_API_PASSWORD")
    if not user or not password:
        raise SettingsError("--api-url needs AIRFLOW_API_USER and AIRFLOW_API_PASSWORD set")
    client = AirflowClient(api_url, user, password)
    try:
        client.token()
    except AirflowAPIError as exc:
        raise SettingsError(f"cannot log in to {api_url} as {user} (HTTP {exc.status})") from None
    return apply_settings_rest(settings, client)


def migrate_db() -> None:
    """Create or upgrade the metadata DB, as `airflow db migrate` does (same function)."""
    from airflow.utils.db import upgradedb

    log.info("migrating the metadata DB")
    upgradedb()
    log.info("metadata DB migrated")


def main(argv: list[str] | None = None) -> int:
    """``python -m airmlops_dev.settings_loader <file>``."""
    parser = argparse.ArgumentParser(
        prog="python -m airmlops_dev.settings_loader",
        description="Upsert an Astro-format airflow_settings.yaml into the Airflow metadata DB.",
    )
    parser.add_argument("file", type=Path)
    parser.add_argument(
        "--check", action="store_true", help="only validate the file; do not touch Airflow"
    )
    parser.add_argument(
        "--api-url",
        help="write through this Airflow's REST API (credentials from AIRFLOW_API_USER and "
        "AIRFLOW_API_PASSWORD) instead of its metadata database",
    )
    parser.add_argument(
        "--migrate",
        action="store_true",
        help="first migrate the metadata DB (as `airflow db migrate`), in the same process: one "
        "Airflow start instead of two",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        settings = load_settings_file(args.file)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        log.info(
            "%s is valid: %d connections, %d pools, %d variables",
            args.file,
            len(settings.connections),
            len(settings.pools),
            len(settings.variables),
        )
        return 0
    if args.migrate:
        migrate_db()
    try:
        counts = _apply_rest(settings, args.api_url) if args.api_url else apply_settings(settings)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    log.info("loaded %s: %s", args.file, counts)
    return 0


if __name__ == "__main__":
    # Through the package module, so that settings_rest raises the same SettingsError class.
    from airmlops_dev.settings_loader import main as package_main

    raise SystemExit(package_main())
