"""PostgreSQL connections for the business database: URL checks, timeouts, password-free errors."""
from __future__ import annotations

import logging
import re
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg2
import psycopg2.extensions

from chalicelib.errors import DatabaseConnectionError, InvalidConnectionString

logger = logging.getLogger(__name__)

_SCHEMES = ("postgresql", "postgres")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def mask_url(url: str) -> str:
    """The URL with its password replaced by `***` (postgresql://user:***@host:port/db).

    Works on anything, even malformed input, so it is safe to call in error paths.
    """
    if not url:
        return url
    masked = url
    if "://" in url:
        scheme, rest = url.split("://", 1)
        head = rest.split("?", 1)[0]
        at = head.rfind("@")  # the last @ before the query: a raw @ in a password must not end the userinfo
        if at != -1 and ":" in head[:at]:
            user, password = head[:at].split(":", 1)
            if password:
                masked = f"{scheme}://{user}:***@{rest[at + 1:]}"
    masked = re.sub(r"([?&]password=)[^&#]*", r"\1***", masked, flags=re.IGNORECASE)
    if "://" in url:
        return masked
    return _KV_PASSWORD.sub(r"\1***", masked)


def _password(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        password = parts.password
        if not password:
            query = parse_qs(parts.query)
            password = (query.get("password") or [None])[0]
        return unquote(password) if password else None
    except ValueError:
        return None


def _check_url(url: str) -> None:
    if not isinstance(url, str) or not url.strip():
        raise InvalidConnectionString("database connection string is empty", invalid_params=["db_connection"])
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in _SCHEMES:
        raise InvalidConnectionString(
            # Not echoed: an unrecognised string may hold a password in a form mask_url does not know.
            "database connection string must start with postgresql:// or postgres://"
            + (f" (got a {scheme}:// URL)" if re.fullmatch(r"[a-z][a-z0-9+.-]{0,20}", scheme) else ""),
            invalid_params=["db_connection"],
        )
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a non-numeric or out-of-range port
    except ValueError as exc:
        raise InvalidConnectionString(
            f"malformed database connection string {mask_url(url)}: {exc}", invalid_params=["db_connection"]
        ) from None
    if not database_name(url):
        raise InvalidConnectionString(
            f"database connection string {mask_url(url)} names no database", invalid_params=["db_connection"]
        )
    if not parts.hostname and "host" not in parse_qs(parts.query):
        raise InvalidConnectionString(
            f"database connection string {mask_url(url)} names no host", invalid_params=["db_connection"]
        )


def database_name(url: str) -> str:
    """The database a connection URL points at (`""` when it names none)."""
    try:
        path = urlsplit(url).path
    except ValueError:
        return ""
    return unquote(path.lstrip("/").split("/", 1)[0])


def _scrub(message: str, url: str) -> str:
    """Driver messages may echo the connection string; keep the password out."""
    message = mask_url(message)
    password = _password(url)
    if password:
        message = message.replace(password, "***")
    return message.strip()


def connect(
    url: str, *, application_name: str = "data_pipeline", connect_timeout: int = 10
) -> psycopg2.extensions.connection:
    """Open a psycopg2 connection (UTF-8, bounded connect time).

    Raises InvalidConnectionString for a malformed or non-PostgreSQL URL and DatabaseConnectionError when the
    server cannot be reached or refuses the login; both messages carry the masked URL, never the password.
    """
    _check_url(url)
    try:
        conn = psycopg2.connect(
            url,
            connect_timeout=connect_timeout,
            application_name=application_name,
            client_encoding="UTF8",
        )
    except psycopg2.OperationalError as exc:
        reason = _scrub(str(exc), url)
        logger.warning("database connection failed", extra={"db": mask_url(url), "reason": reason})
        raise DatabaseConnectionError(f"cannot connect to {mask_url(url)}: {reason}") from None
    except psycopg2.ProgrammingError as exc:  # libpq rejected the URI itself (bad parameter, bad escape …)
        raise InvalidConnectionString(
            f"malformed database connection string {mask_url(url)}: {_scrub(str(exc), url)}",
            invalid_params=["db_connection"],
        ) from None
    return conn
