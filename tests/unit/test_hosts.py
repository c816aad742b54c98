"""The allow-list of database hosts (chalicelib/pipeline/hosts.py): entries, defaults, the check after DNS
resolution and the pinned libpq parameters. DNS is a given table here (the resolver a test hands the policy)."""
from __future__ import annotations

import pytest

from chalicelib.config import get_settings
from chalicelib.errors import (
    DatabaseConnectionError,
    DatabaseHostNotAllowed,
    DataPipelineError,
    InvalidConnectionString,
)
from chalicelib.pipeline import hosts
from chalicelib.pipeline.db import describe_connection_failure


def dns(table: dict[str, list[str]]):
    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise DatabaseConnectionError(f"cannot connect to database host {host}:{port}: DNS: does not resolve")
        return table[host]
    return resolve


def policy(monkeypatch, allowed: str | None, *, local: bool = True, db_url: str | None = None, table=None):
    for name in ("DATA_PIPELINE_ALLOWED_DB_HOSTS", "DATA_PIPELINE_DB_URL", "PGVECTOR_DB_URL"):
        monkeypatch.delenv(name, raising=False)
    if allowed is not None:
        monkeypatch.setenv("DATA_PIPELINE_ALLOWED_DB_HOSTS", allowed)
    if db_url:
        monkeypatch.setenv("DATA_PIPELINE_DB_URL", db_url)
    monkeypatch.setenv("DATA_PIPELINE_LOCAL", "1" if local else "0")
    return hosts.get_host_policy(get_settings(), resolver=dns(table or {}))


@pytest.mark.parametrize(("entry", "kind", "value", "ports"), [
    ("db.internal", "name", "db.internal", None),
    ("DB.Internal.:5432", "name", "db.internal", (5432, 5432)),
    ("10.0.0.0/16", "network", "10.0.0.0/16", None),
    ("10.0.0.7:5432-5439", "network", "10.0.0.7/32", (5432, 5439)),
    ("::1", "network", "::1/128", None),
    ("[fd00::/8]:6432", "network", "fd00::/8", (6432, 6432)),
    ("/var/run/postgresql/", "socket", "/var/run/postgresql", None),
    ("/tmp/pg:5433", "socket", "/tmp/pg", (5433, 5433)),
])
def test_entries(entry, kind, value, ports):
    rule = hosts.parse_rule(entry)
    assert (rule.kind, rule.value, rule.ports) == (kind, value, ports)


@pytest.mark.parametrize("entry", ["db:0", "db:99999", "db:5439-5432", "bad host!", "[::1", "db:x", "a..b"])
def test_bad_entries_are_named(entry):
    with pytest.raises(DataPipelineError, match="DATA_PIPELINE_ALLOWED_DB_HOSTS") as info:
        hosts.parse_rule(entry)
    assert repr(entry) in info.value.message


def test_local_default_is_loopback_and_sockets(monkeypatch):
    p = policy(monkeypatch, None, table={"localhost": ["127.0.0.1", "::1"], "db.example": ["10.1.2.3"]})
    assert p.check_endpoint("localhost", 5432).addresses == ("127.0.0.1", "::1")
    assert p.check_endpoint("/tmp/anything", 5432).addresses == ()
    with pytest.raises(DatabaseHostNotAllowed, match=r"db\.example:5432 .*resolves to 10\.1\.2\.3"):
        p.check_endpoint("db.example", 5432)
    with pytest.raises(DatabaseHostNotAllowed):
        p.check_endpoint("0.0.0.0", 5432)  # reaches this machine too, but is not loopback by the list


def test_aws_default_is_only_the_configured_databases(monkeypatch):
    p = policy(monkeypatch, None, local=False, db_url="postgresql://u:pw@business.db:6543/sales",
               table={"business.db": ["10.0.0.5"], "localhost": ["127.0.0.1"], "other.db": ["10.0.0.5"]})
    assert p.check_endpoint("business.db", 6543).addresses == ("10.0.0.5",)
    for host, port in (("business.db", 5432), ("localhost", 5432), ("127.0.0.1", 6543), ("/tmp/sock", 5432)):
        with pytest.raises(DatabaseHostNotAllowed) as info:
            p.check_endpoint(host, port)
        assert info.value.status == 403 and info.value.code == "DATABASE_HOST_NOT_ALLOWED"
        assert host in info.value.message
    # another name for the configured database's address, on its port, is the same place
    assert p.check_endpoint("other.db", 6543).addresses == ("10.0.0.5",)


def test_every_resolved_address_must_be_allowed(monkeypatch):
    p = policy(monkeypatch, "10.0.0.0/24:5432", table={"split.db": ["10.0.0.9", "192.168.1.9"], "ok.db": ["10.0.0.3"]})
    assert p.check_endpoint("ok.db", 5432).addresses == ("10.0.0.3",)
    with pytest.raises(DatabaseHostNotAllowed, match="192.168.1.9"):
        p.check_endpoint("split.db", 5432)
    with pytest.raises(DatabaseHostNotAllowed):
        p.check_endpoint("ok.db", 5433)  # the port is part of the rule


def test_an_explicit_list_replaces_the_local_default_and_names_resolve(monkeypatch):
    p = policy(monkeypatch, "db.internal:5432,/srv/pg",
               table={"db.internal": ["10.9.9.9"], "alias.internal": ["10.9.9.9"], "localhost": ["127.0.0.1"]})
    assert p.check_endpoint("alias.internal", 5432).addresses == ("10.9.9.9",)
    assert p.check_endpoint("/srv/pg/", 5432).addresses == ()
    for host in ("localhost", "/tmp/other"):
        with pytest.raises(DatabaseHostNotAllowed):
            p.check_endpoint(host, 5432)


def test_urls_every_host_hostaddr_and_service(monkeypatch):
    p = policy(monkeypatch, "10.0.0.0/8", table={"a.db": ["10.0.0.1"], "b.db": ["10.0.0.2"]})
    endpoints = p.check_url("postgresql://u:pw@a.db:5432,b.db:5433/x")
    assert hosts.pinned_parameters(endpoints) == {"port": "5432,5433", "hostaddr": "10.0.0.1,10.0.0.2"}
    with pytest.raises(DatabaseHostNotAllowed, match="c.db"):
        policy(monkeypatch, "10.0.0.0/8", table={"a.db": ["10.0.0.1"], "c.db": ["172.16.0.1"]}).check_url(
            "postgresql://u@a.db,c.db/x")
    # a hostaddr in the string is where libpq connects: it is what is checked
    with pytest.raises(DatabaseHostNotAllowed, match="a.db:5432"):
        p.check_url("postgresql://u@a.db/x?hostaddr=192.168.0.1")
    for url in ("postgresql://u@a.db/x?service=evil", "postgresql://u@a.db/x?hostaddr=not-an-ip"):
        with pytest.raises(InvalidConnectionString):
            p.check_url(url)


def test_the_configured_database_is_allowed_whatever_the_list(monkeypatch):
    p = policy(monkeypatch, "10.0.0.0/8", db_url="postgresql://u@/demo?host=/tmp/embedded")
    assert p.check_endpoint("/tmp/embedded", 5432).addresses == ()
    with pytest.raises(DatabaseHostNotAllowed):
        p.check_endpoint("/tmp/embedded", 5433)


@pytest.mark.parametrize(("message", "kind"), [
    ('connection to server at "10.0.0.1", port 5432 failed: Connection refused', "connection refused"),
    ("connection to server at \"h\" (10.0.0.1), port 5432 failed: timeout expired", "timeout"),
    ('FATAL:  password authentication failed for user "app"', "authentication failed"),
    ('FATAL:  no pg_hba.conf entry for host "10.0.0.9", user "app", database "x"', "authentication failed"),
    ('FATAL:  database "sales" does not exist', "database sales does not exist"),
    ("could not translate host name \"nope\" to address: Name or service not known", "DNS"),
    ("server closed the connection unexpectedly", "the server closed the connection"),
    ("致命错误:  用户 \"app\" Password 认证失败", "the connection failed"),  # a localised server text: not echoed
])
def test_connection_failures_are_told_in_our_words(message, kind):
    told = describe_connection_failure(message, database="sales", timeout=10)
    assert told.startswith(kind)
    assert "FATAL" not in told and "致命" not in told and "app" not in told

