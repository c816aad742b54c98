"""PostgreSQL connections for the business database: URL checks, timeouts, password-free errors."""
from __future__ import annotations

import logging
import re
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg
import psycopg2
import psycopg2.extensions

from chalicelib.errors import DatabaseConnectionError, InvalidConnectionString
from chalicelib.pipeline import hosts

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


def _scrub(message: str, url: str) -> str:
    """libpq's parse messages may echo the connection string; keep the password out."""
    message = mask_url(message)
    password = _password(url)
    if password:
        message = message.replace(password, "***")
    return message.strip()


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
    try:
        psycopg2.extensions.parse_dsn(url)
    except psycopg2.ProgrammingError as exc:  # libpq's own parser refuses it (unknown parameter, bad escape …)
        raise InvalidConnectionString(
            f"malformed database connection string {mask_url(url)}: {_scrub(str(exc), url)}",
            invalid_params=["db_connection"],
        ) from None


def database_name(url: str) -> str:
    """The database a connection URL points at (`""` when it names none)."""
    try:
        path = urlsplit(url).path
    except ValueError:
        return ""
    return unquote(path.lstrip("/").split("/", 1)[0])


# libpq's words (its own, or the server's FATAL text it passes on) -> what a caller is told. The server's text is
# never returned: it may be localised, name roles, or echo what a caller typed.
_FAILURES = (
    (re.compile(r"password authentication failed|authentication failed|no password supplied|pg_hba\.conf|"
                r"role \S+ does not exist|password is required|SCRAM|GSSAPI|SSPI|Kerberos", re.I),
     "authentication failed"),
    (re.compile(r"database \S+ does not exist", re.I), "database {db} does not exist"),
    (re.compile(r"not currently accepting connections", re.I), "database {db} is not currently accepting connections"),
    (re.compile(r"timeout expired|timed out", re.I), "timeout: no answer within {timeout} s"),
    (re.compile(r"Connection refused|No such file or directory", re.I), "connection refused (no server listening)"),
    (re.compile(r"could not translate host name|Name or service not known|nodename nor servname", re.I),
     "DNS: the host name does not resolve"),
    (re.compile(r"Network is unreachable|No route to host|Host is unreachable", re.I), "network unreachable"),
    (re.compile(r"SSL|TLS|certificate", re.I), "TLS negotiation failed"),
    (re.compile(r"too many connections|remaining connection slots", re.I), "the server has no free connection slot"),
    (re.compile(r"starting up|shutting down|in recovery mode", re.I), "the server is starting up or shutting down"),
    (re.compile(r"server closed the connection|terminat", re.I), "the server closed the connection"),
)


def describe_connection_failure(message: str, *, database: str, timeout: int) -> str:
    """The kind of a connection failure in the service's own words (see _FAILURES)."""
    for pattern, kind in _FAILURES:
        if pattern.search(message):
            return kind.format(db=database or "(none)", timeout=timeout)
    return "the connection failed"


def check_connection_allowed(url: str, policy: hosts.HostPolicy | None = None) -> list[hosts.Endpoint]:
    """The endpoints of `url`, checked against the allow-list after DNS resolution (nothing is connected):
    InvalidConnectionString (400) for a malformed URL, DatabaseHostNotAllowed (403) for a host or address that is
    not allowed, DatabaseConnectionError (500) naming a host that does not resolve."""
    _check_url(url)
    return (policy or hosts.get_host_policy()).check_url(url)


# The two drivers: psycopg2 for introspection and loads, psycopg 3 where statements must travel through the
# extended query protocol (db_pool.connect_extended). Both take libpq's parameters as keywords.
_DRIVERS = {
    "psycopg2": (psycopg2.connect, psycopg2.OperationalError, psycopg2.ProgrammingError),
    "psycopg": (psycopg.connect, psycopg.OperationalError, psycopg.ProgrammingError),
}


def connect(
    url: str, *, application_name: str = "data_pipeline", connect_timeout: int = 10,
    policy: hosts.HostPolicy | None = None, driver: str = "psycopg2", **options: object,
) -> psycopg2.extensions.connection:
    """Open a connection (UTF-8, bounded connect time) to an allowed host, at the address checked: psycopg2 by
    default, psycopg 3 with `driver="psycopg"` (`options` go to the driver, e.g. autocommit=True).

    Raises InvalidConnectionString for a malformed or non-PostgreSQL URL, DatabaseHostNotAllowed when the host is
    not allowed (before any connection attempt) and DatabaseConnectionError when the server cannot be reached or
    refuses the login; messages name the host and the kind of failure, never the password or the server's text.
    """
    open_connection, operational_error, programming_error = _DRIVERS[driver]
    endpoints = check_connection_allowed(url, policy)
    try:
        conn = open_connection(
            url,
            connect_timeout=connect_timeout,
            application_name=application_name,
            client_encoding="UTF8",
            **hosts.pinned_parameters(endpoints),
            **options,
        )
    except operational_error as exc:
        kind = describe_connection_failure(str(exc), database=database_name(url), timeout=connect_timeout)
        where = ", ".join(e.text for e in endpoints)
        logger.warning("database connection failed", extra={"db": mask_url(url), "hosts": where, "kind": kind})
        raise DatabaseConnectionError(f"cannot connect to {mask_url(url)} (host {where}): {kind}") from None
    except programming_error:  # libpq rejected the URI itself (bad parameter, bad escape …)
        raise InvalidConnectionString(
            f"malformed database connection string {mask_url(url)}: libpq refused its parameters",
            invalid_params=["db_connection"],
        ) from None
    return conn
