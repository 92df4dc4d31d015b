"""Bearer-token authentication of the model API.

Every route but `GET /health` asks for `Authorization: Bearer <token>`. The token comes from
the environment (`AIRMLOPS_MODEL_API_TOKEN`) or a file (`--token-file`, or
`AIRMLOPS_MODEL_API_TOKEN_FILE`), never from a value on the command line, which every user of
the host sees in the process list. `/metrics` also accepts a scrape-only token
(`AIRMLOPS_MODEL_API_METRICS_TOKEN[_FILE]`, `--metrics-token-file`): Prometheus keeps its
credential in its own config (`authorization: {credentials_file: ...}`), and that credential
then cannot score or read a model's example.

Tokens are compared in constant time (`hmac.compare_digest` of SHA-256 digests, so neither the
content nor the length leaks). A refused request gets 401 with `WWW-Authenticate: Bearer`
before its body is read. No token is ever logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import SecretStr
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from airmlops_core import settings
from airmlops_core.errors import CredentialError

log = logging.getLogger(__name__)

TOKEN_ENV = "AIRMLOPS_MODEL_API_TOKEN"
TOKEN_FILE_ENV = "AIRMLOPS_MODEL_API_TOKEN_FILE"
METRICS_TOKEN_ENV = "AIRMLOPS_MODEL_API_METRICS_TOKEN"
METRICS_TOKEN_FILE_ENV = "AIRMLOPS_MODEL_API_METRICS_TOKEN_FILE"
MIN_TOKEN_CHARS = 24
OPEN_PATHS = frozenset({"/health"})
METRICS_PATH = "/metrics"
REALM = "airmlops-model-api"
GENERATE_HINT = "generate one: python -c 'import secrets; print(secrets.token_urlsafe(32))'"

Refusal = Literal["missing", "invalid"]


def generate_token() -> str:
    """A new random token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def bearer(token: str) -> dict[str, str]:
    """The request header that carries `token`."""
    return {"Authorization": f"Bearer {token}"}


def _checked(token: str, where: str) -> str:
    if len(token) < MIN_TOKEN_CHARS:
        raise CredentialError(
            f"{where}: the token has {len(token)} characters; at least {MIN_TOKEN_CHARS} are "
            f"needed ({GENERATE_HINT})"
        )
    if not token.isascii() or not token.isprintable() or any(c.isspace() for c in token):
        raise CredentialError(f"{where}: the token must be printable ASCII without spaces")
    return token


def read_token(
    value: SecretStr | None,
    file: str | Path | None,
    value_env: str,
    file_env: str,
    *,
    flag: bool = False,
) -> str | None:
    """A token from `file` (a CLI flag or the file `$file_env` names), else `value`.

    Args:
        value: The token from `$value_env` (settings object), if any.
        file: The file holding the token, if any.
        value_env: The variable `value` came from (named in errors).
        file_env: The variable `file` came from unless `flag` (named in errors).
        flag: `file` came from a command-line flag.

    Returns:
        The token, or None when neither is set.

    Raises:
        CredentialError: the file cannot be read, or the token is short or not printable ASCII
            (the message names the variable or file, never the value).
    """
    if file:
        path = Path(file)
        where = f"token file {path}" + ("" if flag else f" (${file_env})")
        try:
            text = path.read_text(encoding="utf-8")
            mode = path.stat().st_mode
        except OSError as exc:
            raise CredentialError(f"{where}: cannot read it: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise CredentialError(f"{where}: not UTF-8 text") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            shown = stat.S_IMODE(mode)
            log.warning("%s can be read by other users (mode %o): chmod 600 it", where, shown)
        return _checked(text.strip(), where)
    secret = value.get_secret_value() if value is not None else ""
    return _checked(secret.strip(), f"${value_env}") if secret else None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("latin-1")).digest()


@dataclass(frozen=True, repr=False)
class Tokens:
    """The API token (every route) and an optional scrape-only token (/metrics). No repr."""

    api: str
    metrics: str | None = None

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str],
        *,
        token_file: str | None = None,
        metrics_token_file: str | None = None,
    ) -> Tokens:
        """Read both tokens from `env` (see `read_token`); the API token is required.

        Raises:
            CredentialError: no API token anywhere, a bad token, or both tokens equal.
        """
        cfg = settings.current(env)
        api = read_token(
            cfg.model_api_token,
            token_file or cfg.model_api_token_file,
            TOKEN_ENV,
            TOKEN_FILE_ENV,
            flag=bool(token_file),
        )
        if api is None:
            raise CredentialError(
                f"no API token: set ${TOKEN_ENV}, or ${TOKEN_FILE_ENV} or --token-file to a "
                f"file holding it ({GENERATE_HINT})"
            )
        metrics = read_token(
            cfg.model_api_metrics_token,
            metrics_token_file or cfg.model_api_metrics_token_file,
            METRICS_TOKEN_ENV,
            METRICS_TOKEN_FILE_ENV,
            flag=bool(metrics_token_file),
        )
        if metrics is not None and hmac.compare_digest(_digest(metrics), _digest(api)):
            raise CredentialError(
                f"the metrics token equals the API token: give ${METRICS_TOKEN_ENV} its own "
                "value, or leave it unset (then /metrics takes the API token)"
            )
        return cls(api, metrics)

    def __repr__(self) -> str:
        return f"Tokens(api=<hidden>, metrics={'<hidden>' if self.metrics else None})"


class BearerAuth:
    """ASGI middleware: every request but `OPEN_PATHS` needs a valid bearer token.

    Args:
        app: The app behind it.
        tokens: The accepted tokens (the metrics token on `METRICS_PATH` only).
        on_refused: Called with "missing" or "invalid" for each refused request (metrics).
    """

    def __init__(
        self,
        app: ASGIApp,
        tokens: Tokens,
        on_refused: Callable[[Refusal], None] | None = None,
    ) -> None:
        self.app = app
        self._api = _digest(tokens.api)
        self._metrics = _digest(tokens.metrics) if tokens.metrics else None
        self.on_refused = on_refused

    def refusal(self, path: str, authorization: str | None) -> Refusal | None:
        """Why a request to `path` with this Authorization header is refused; None: let in."""
        if path in OPEN_PATHS:
            return None
        scheme, _, credentials = (authorization or "").strip().partition(" ")
        credentials = credentials.strip()
        if scheme.lower() != "bearer" or not credentials:
            return "missing"
        given = _digest(credentials)  # the header as Starlette decoded it (latin-1)
        ok = hmac.compare_digest(given, self._api)
        if path == METRICS_PATH and self._metrics is not None:
            ok = hmac.compare_digest(given, self._metrics) or ok
        return None if ok else "invalid"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        reason = self.refusal(scope["path"], Headers(scope=scope).get("authorization"))
        if reason is None:
            await self.app(scope, receive, send)
            return
        if self.on_refused is not None:
            self.on_refused(reason)
        await unauthorized(reason)(scope, receive, send)


def unauthorized(reason: Refusal) -> JSONResponse:
    """The 401 answer (RFC 6750): what is missing or wrong, never which token was expected."""
    challenge = f'Bearer realm="{REALM}"'
    if reason == "invalid":
        challenge += ', error="invalid_token"'
        message = "the bearer token is not valid"
    else:
        message = "this route needs a token: send the header 'Authorization: Bearer <token>'"
    return JSONResponse(
        {"error_code": "UNAUTHORIZED", "message": message},
        status_code=401,
        headers={"WWW-Authenticate": challenge},
    )
