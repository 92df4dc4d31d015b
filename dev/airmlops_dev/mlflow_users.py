"""The compose stack's read-only MLflow user, for the model API (run by ``mlflow-init``).

    python -m airmlops_dev.mlflow_users

The model API only reads the registry: the alias's version and the version's artifacts. It logs
in as ``MLFLOW_READER_USER``, which this command creates (or, on every later run, resets to the
password in ``MLFLOW_READER_PASSWORD``, so a rotation in ``.env`` applies) and reconciles to
exactly :data:`READER_GRANTS`: READ on every registered model and every experiment (runs and
their artifacts), no admin flag, no other grant or role. The MLflow server runs with
``--enable-workspaces`` and without default workspace access, so a user has only what it is
granted: the reader can neither create a registered model or experiment nor change one.

It talks to ``MLFLOW_TRACKING_URI`` as the admin (``MLFLOW_TRACKING_USERNAME`` /
``MLFLOW_TRACKING_PASSWORD``) through MLflow's own auth client; no password is printed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)

READ = "READ"
# (resource_type, resource pattern) -> permission; "*" is every resource of the type
READER_GRANTS: dict[tuple[str, str], str] = {
    ("registered_model", "*"): READ,
    ("experiment", "*"): READ,
}
REQUIRED_ENV = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_READER_USER",
    "MLFLOW_READER_PASSWORD",
)
_OWN_ROLE_PREFIX = "__user_"  # the role MLflow keeps per user for its direct grants


class MlflowUsersError(RuntimeError):
    """The reader cannot be set up; the message names the variable or the server's answer."""


def list_permissions(tracking_uri: str, username: str) -> list[dict[str, Any]]:
    """A user's grants, each with permission, resource_type, resource_pattern, role_id and
    role_name (MLflow's auth client has no method for this listing)."""
    from mlflow.server.auth.routes import LIST_USER_PERMISSIONS
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request, verify_rest_response

    resp = http_request(
        get_default_host_creds(tracking_uri),
        LIST_USER_PERMISSIONS,
        "GET",
        params={"username": username},
    )
    return list(verify_rest_response(resp, LIST_USER_PERMISSIONS).json().get("permissions", []))


def ensure_reader(tracking_uri: str, username: str, password: str) -> dict[str, list[str]]:
    """Create or update the read-only user and reconcile its grants to READER_GRANTS.

    Args:
        tracking_uri: The MLflow server; this process's MLflow credentials must be an admin's.
        username: The reader.
        password: Its password (MLflow requires at least 12 characters).

    Returns:
        What was done, by action: ``created``/``updated`` (the user), ``granted``, ``revoked``,
        ``unassigned`` (roles), ``demoted`` (admin flag removed).

    Raises:
        MlflowUsersError: ``username`` is the admin's own.
        mlflow.exceptions.RestException: The server refused a step (bad admin credentials, a
            password that is too short).
    """
    from mlflow.exceptions import RestException
    from mlflow.server.auth.client import AuthServiceClient

    if username == os.environ.get("MLFLOW_TRACKING_USERNAME"):
        raise MlflowUsersError(
            f"MLFLOW_READER_USER is {username!r}, the admin's name: choose another user"
        )
    client = AuthServiceClient(tracking_uri)
    report: dict[str, list[str]] = {
        k: [] for k in ("created", "updated", "granted", "revoked", "unassigned", "demoted")
    }
    try:
        user = client.get_user(username)
    except RestException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        client.create_user(username, password)
        report["created"].append(username)
    else:
        client.update_user_password(username, password)
        report["updated"].append(username)
        if user.is_admin:
            client.update_user_admin(username, False)
            report["demoted"].append(username)
    have: dict[tuple[str, str], str] = {}
    for grant in list_permissions(tracking_uri, username):
        key = (str(grant["resource_type"]), str(grant["resource_pattern"]))
        role = str(grant.get("role_name") or "")
        if not role.startswith(_OWN_ROLE_PREFIX):
            client.unassign_role(username, int(grant["role_id"]))
            report["unassigned"].append(role)
        elif READER_GRANTS.get(key) == grant["permission"]:
            have[key] = str(grant["permission"])
        else:
            client.revoke_user_permission(username, *key)
            report["revoked"].append(f"{grant['permission']} {key[0]} {key[1]}")
    for key, permission in READER_GRANTS.items():
        if have.get(key) != permission:
            client.grant_user_permission(username, key[0], key[1], permission)
            report["granted"].append(f"{permission} {key[0]} {key[1]}")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m airmlops_dev.mlflow_users``: set up the reader from the environment."""
    argparse.ArgumentParser(
        prog="python -m airmlops_dev.mlflow_users",
        description="Create or update the model API's read-only MLflow user (see "
        + "docs/deployment.md). Configured by the environment: "
        + ", ".join(REQUIRED_ENV),
    ).parse_args(argv)
    env = os.environ  # MLflow's client reads the admin's credentials from here too
    missing = [name for name in REQUIRED_ENV if not env.get(name)]
    if missing:
        print(f"error: {', '.join(missing)} not set", file=sys.stderr)
        return 2
    try:
        report = ensure_reader(
            env["MLFLOW_TRACKING_URI"], env["MLFLOW_READER_USER"], env["MLFLOW_READER_PASSWORD"]
        )
    except MlflowUsersError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    user = env["MLFLOW_READER_USER"]
    print(f"mlflow-init: reader {user!r} {'created' if report['created'] else 'updated'}")
    for action in ("demoted", "unassigned", "revoked", "granted"):
        if report[action]:
            print(f"  {action}: {', '.join(report[action])}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    raise SystemExit(main())
