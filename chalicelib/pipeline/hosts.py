"""Where the service may connect: the DATA_PIPELINE_ALLOWED_DB_HOSTS allow-list, checked after DNS resolution and
before any connection, and the resolved addresses every connection is pinned to (so a DNS answer that changes
between the check and the connect cannot move it elsewhere).

Entries (comma list): a host name (`db.internal`), an address or CIDR (`10.0.0.5`, `10.0.0.0/16`, `[fd00::/8]`),
or a Unix-socket folder (`/var/run/postgresql`), each with an optional `:port` or `:first-last` port range (no
port: any port). The configured databases (DATA_PIPELINE_DB_URL, PGVECTOR_DB_URL: their host and port) are always
allowed. Unset, the list is: on AWS nothing else; locally also loopback (127.0.0.0/8, ::1) and Unix sockets
(the embedded server), which reach only this machine.
"""
from __future__ import annotations

import ipaddress
import logging
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass

import psycopg2
import psycopg2.extensions

from chalicelib.config import Settings, get_settings
from chalicelib.errors import (
    DatabaseConnectionError,
    DatabaseHostNotAllowed,
    DataPipelineError,
    InvalidConnectionString,
)

logger = logging.getLogger(__name__)

DEFAULT_PORT = 5432
SETTING = "DATA_PIPELINE_ALLOWED_DB_HOSTS"
_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62}))*\.?$")
_PORTS = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?$")
_LOOPBACK = ("127.0.0.0/8", "::1/128")

Resolver = Callable[[str, int], list[str]]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def resolve_host(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (TCP), in the resolver's order; DatabaseConnectionError naming the host
    when it does not resolve."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise DatabaseConnectionError(f"cannot connect to database host {host}:{port}: DNS: the host name does not "
                                      f"resolve ({type(exc).__name__})") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class Rule:
    """One allowed place: `network` (addresses), `name` (a host name: the addresses it resolves to) or `socket`
    (a Unix-socket folder; `"*"` any), with a port range (None: any port)."""

    kind: str
    value: str
    ports: tuple[int, int] | None
    source: str

    def allows_port(self, port: int) -> bool:
        return self.ports is None or self.ports[0] <= port <= self.ports[1]

    @property
    def network(self) -> IPNetwork:
        return ipaddress.ip_network(self.value, strict=False)


@dataclass(frozen=True)
class Endpoint:
    """One host of a connection string, checked: `addresses` are what it resolved to (all allowed); a socket
    folder has none."""

    host: str
    port: int
    addresses: tuple[str, ...]

    @property
    def is_socket(self) -> bool:
        return is_socket_path(self.host) and not self.addresses

    @property
    def text(self) -> str:
        return f"{self.host}:{self.port}" if not self.is_socket else f"{self.host} (port {self.port})"


def is_socket_path(host: str) -> bool:
    return host.startswith("/") or host.startswith("@")


def _address(text: str) -> IPAddress | None:
    try:
        addr = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _ports(text: str, entry: str) -> tuple[int, int]:
    match = _PORTS.match(text)
    first, last = (int(match.group(1)), int(match.group(2) or match.group(1))) if match else (0, 0)
    if not match or not 1 <= first <= last <= 65535:
        raise DataPipelineError(f"{SETTING}: {entry!r} has no valid port or port range after ':'")
    return first, last


def _network(text: str) -> str | None:
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        return None


def parse_rule(entry: str, source: str = SETTING) -> Rule:
    """One entry of the allow-list (see the module doc); AllowListError naming it when it is none of them."""
    text = entry.strip()
    if is_socket_path(text):
        path, _, port = text.partition(":")
        return Rule("socket", path.rstrip("/") or "/", _ports(port, entry) if port else None, source)
    if text.startswith("["):  # [IPv6] or [IPv6/len], then an optional :port
        inside, bracket, rest = text[1:].partition("]")
        network = _network(inside)
        if network is None or not bracket or (rest and not rest.startswith(":")):
            raise DataPipelineError(f"{SETTING}: {entry!r} is not an [IPv6 address or network] with an optional :port")
        return Rule("network", network, _ports(rest[1:], entry) if rest else None, source)
    network = _network(text)  # a bare address or CIDR (IPv6 without brackets takes no port)
    if network is not None:
        return Rule("network", network, None, source)
    head, sep, port = text.rpartition(":")
    host, ports = (head, _ports(port, entry)) if sep else (text, None)
    network = _network(host)
    if network is not None:
        return Rule("network", network, ports, source)
    if _NAME.match(host):
        return Rule("name", host.rstrip(".").lower(), ports, source)
    raise DataPipelineError(f"{SETTING}: {entry!r} is not a host name, address, CIDR or socket folder")


def parse_allowed_hosts(text: str) -> list[Rule]:
    return [parse_rule(part) for part in text.split(",") if part.strip()]


def connection_endpoints(url: str) -> list[tuple[str, int, str | None]]:
    """(host, port, hostaddr given in the string) for each host of a connection string, as libpq reads it;
    InvalidConnectionString when the hosts cannot be told (a `service` lookup, an empty host, uneven lists)."""
    try:
        params = psycopg2.extensions.parse_dsn(url)
    except psycopg2.ProgrammingError:
        raise InvalidConnectionString("malformed database connection string", invalid_params=["db_connection"]) \
            from None
    if "service" in params or "servicefile" in params:
        raise InvalidConnectionString("database connection strings may not name a service (its host could not be "
                                      "checked); give host and port", invalid_params=["db_connection"])
    hosts = (params.get("host") or "").split(",")
    ports = (params.get("port") or "").split(",")
    given = (params.get("hostaddr") or "").split(",") if params.get("hostaddr") else [""] * len(hosts)
    if len(ports) == 1:
        ports = ports * len(hosts)
    if any(not h.strip() for h in hosts) or len(ports) != len(hosts) or len(given) != len(hosts):
        raise InvalidConnectionString("database connection string names an empty host, or its host, port and "
                                      "hostaddr lists differ in length", invalid_params=["db_connection"])
    found = []
    for host, port, addr in zip(hosts, ports, given, strict=True):
        try:
            number = int(port) if port.strip() else DEFAULT_PORT
        except ValueError:
            raise InvalidConnectionString(f"database port {port!r} is not a number",
                                          invalid_params=["db_connection"]) from None
        if addr.strip() and _address(addr.strip()) is None:
            raise InvalidConnectionString(f"hostaddr {addr!r} is not an IP address", invalid_params=["db_connection"])
        found.append((host.strip(), number, addr.strip() or None))
    return found


def _configured_rules(settings: Settings) -> list[Rule]:
    rules = []
    for source, url in (("DATA_PIPELINE_DB_URL", settings.db_url), ("PGVECTOR_DB_URL", settings.pgvector_db_url)):
        if not url:
            continue
        try:
            endpoints = connection_endpoints(url)
        except InvalidConnectionString:
            logger.warning("configured database url unreadable", extra={"setting": source})
            continue
        for host, port, addr in endpoints:
            kind = "socket" if is_socket_path(host) else ("network" if _address(host) else "name")
            value = host.rstrip("/") if kind == "socket" else (_network(host) if kind == "network" else host.lower())
            rules.append(Rule(kind, value or host, (port, port), source))
            if addr:
                rules.append(Rule("network", str(_network(addr)), (port, port), source))
    return rules


@dataclass(frozen=True)
class HostPolicy:
    """The allow-list in force, and how names are resolved (socket.getaddrinfo unless a test gives its DNS)."""

    rules: tuple[Rule, ...]
    explicit: bool
    resolver: Resolver = resolve_host

    def _address_allowed(self, addr: IPAddress, port: int, host: str) -> bool:
        for rule in self.rules:
            if not rule.allows_port(port):
                continue
            if rule.kind == "network" and addr in rule.network:
                return True
            if rule.kind == "name":
                if rule.value == host.rstrip(".").lower():
                    return True  # the allowed name itself: the addresses it resolves to are its addresses
                try:
                    known = {_address(a) for a in self.resolver(rule.value, port)}
                except DatabaseConnectionError:
                    continue  # an allowed name that does not resolve allows nothing
                if addr in known:
                    return True
        return False

    def check_endpoint(self, host: str, port: int, hostaddr: str | None = None) -> Endpoint:
        """The endpoint with the addresses the connection must use; DatabaseHostNotAllowed when the host, or any
        address it resolves to, is not allowed (nothing is connected either way)."""
        if is_socket_path(host) and not hostaddr:
            path = host.rstrip("/") or "/"
            if any(r.kind == "socket" and r.value in ("*", path) and r.allows_port(port) for r in self.rules):
                return Endpoint(host, port, ())
            raise self._refused(host, port, "this socket folder is not allowed")
        literal = _address(hostaddr or host)
        addresses = [hostaddr or host] if literal is not None else self.resolver(host, port)
        for text in addresses:
            addr = _address(text)
            if addr is None or not self._address_allowed(addr, port, host if literal is None else ""):
                shown = "" if text == host else f" (it resolves to {text})"
                raise self._refused(host, port, f"the address is not allowed{shown}")
        return Endpoint(host, port, tuple(addresses))

    def check_url(self, url: str) -> list[Endpoint]:
        return [self.check_endpoint(host, port, addr) for host, port, addr in connection_endpoints(url)]

    def _refused(self, host: str, port: int, why: str) -> DatabaseHostNotAllowed:
        where = f"{host}:{port}" if not is_socket_path(host) else f"{host} (port {port})"
        logger.warning("database host refused", extra={"host": where, "reason": why})
        listed = SETTING if self.explicit else f"the default of {SETTING} (unset)"
        return DatabaseHostNotAllowed(
            f"database host {where} is not allowed: {why} (allowed: the configured databases and {listed}); "
            "nothing was connected", invalid_params=["db_connection"])


def get_host_policy(settings: Settings | None = None, *, resolver: Resolver | None = None) -> HostPolicy:
    """The allow-list of these settings: DATA_PIPELINE_ALLOWED_DB_HOSTS (or the default for where this runs) plus
    the configured databases."""
    settings = settings or get_settings()
    raw = settings.allowed_db_hosts
    if raw is not None:
        rules = parse_allowed_hosts(raw)
    elif settings.local_stack:
        rules = [Rule("network", net, None, "local default") for net in _LOOPBACK]
        rules.append(Rule("socket", "*", None, "local default"))
    else:
        rules = []
    return HostPolicy(tuple(rules + _configured_rules(settings)), raw is not None, resolver or resolve_host)


def pinned_parameters(endpoints: list[Endpoint]) -> dict[str, str]:
    """libpq parameters that make the connection use exactly the checked addresses and ports: `hostaddr` (empty
    for a socket folder, which has no address) and `port`; `host` stays for TLS verification and .pgpass."""
    params = {"port": ",".join(str(e.port) for e in endpoints)}
    if any(e.addresses for e in endpoints):
        params["hostaddr"] = ",".join(e.addresses[0] if e.addresses else "" for e in endpoints)
    return params
