"""Where the service may connect (issue 12, item 2): DATA_PIPELINE_ALLOWED_DB_HOSTS refuses with 403 before any
connection attempt on every route and task path; an allowed host is connected at the address that was checked.

A listening socket on loopback records every TCP connection it accepts (and closes it at once), so a test can tell
"refused before connecting" from "connected and failed"."""
from __future__ import annotations

import socket
import threading

import pytest

from chalicelib.errors import DatabaseConnectionError, DatabaseHostNotAllowed
from chalicelib.pipeline import db, db_pool, hosts
from chalicelib.steps import ddl_generation
from tests.support.aws_api import api_environment, post_json

TASKS = "/api/v0/data_pipeline/tasks"
DATABASE = "/api/v0/database"
SECRET = "pw-never-shown"


class Listener:
    """A TCP server on 127.0.0.1 that accepts, counts and closes every connection."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepts = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepts += 1
            conn.close()

    def url(self, host: str = "127.0.0.1", db_name: str = "sales") -> str:
        return f"postgresql://app:{SECRET}@{host}:{self.port}/{db_name}"

    def close(self):
        self.sock.close()


@pytest.fixture
def listener():
    server = Listener()
    yield server
    server.close()


@pytest.fixture
def client(monkeypatch, tmp_path):
    monkeypatch.setenv("DATA_PIPELINE_LOCAL", "1")
    monkeypatch.delenv("DATA_PIPELINE_ALLOWED_DB_HOSTS", raising=False)
    with api_environment(monkeypatch, tmp_path) as c:
        yield c


def _refused(res, host: str) -> dict:
    body = res.json_body
    assert res.status_code == 403, body
    assert body["success"] is False and body["code"] == 403
    assert body["error"]["code"] == "DATABASE_HOST_NOT_ALLOWED" and body["error"]["invalid_params"] == ["db_connection"]
    assert host in body["message"] and SECRET not in res.body.decode()
    return body


def test_every_route_refuses_a_host_outside_the_list_without_connecting(client, listener, monkeypatch):
    monkeypatch.setenv("DATA_PIPELINE_ALLOWED_DB_HOSTS", "10.0.0.0/8,db.internal:5432")
    where = f"127.0.0.1:{listener.port}"
    _refused(post_json(client, f"{DATABASE}/tables", {"db_connection": listener.url()}), where)
    _refused(post_json(client, f"{DATABASE}/table/ddl", {"db_connection": listener.url(), "table": "t"}), where)
    _refused(post_json(client, TASKS, {"task_name": "probe", "db_connection": listener.url()}), where)
    # a name is checked by what it resolves to
    body = _refused(post_json(client, f"{DATABASE}/tables", {"db_connection": listener.url("localhost")}),
                    f"localhost:{listener.port}")
    assert "resolves to" in body["message"]
    assert client.http.get(TASKS).json_body["data"]["total"] == 0  # no task was stored
    assert listener.accepts == 0


def test_an_allowed_host_is_connected_and_its_failure_told_in_our_words(client, listener, monkeypatch):
    monkeypatch.setenv("DATA_PIPELINE_ALLOWED_DB_HOSTS", f"127.0.0.1:{listener.port}")
    res = post_json(client, f"{DATABASE}/tables", {"db_connection": listener.url()})
    assert res.status_code == 500 and res.json_body["error"]["code"] == "DATABASE_CONNECTION_ERROR"
    message = res.json_body["message"]
    assert f"127.0.0.1:{listener.port}" in message and "the server closed the connection" in message
    assert SECRET not in res.body.decode() and "unexpectedly" not in message  # libpq's own words are not passed on
    assert listener.accepts == 1


def test_a_task_is_checked_again_at_execute_and_in_the_step_lambdas(client, listener, monkeypatch):
    monkeypatch.setenv("DATA_PIPELINE_ALLOWED_DB_HOSTS", f"127.0.0.1:{listener.port}")
    created = post_json(client, TASKS, {"task_name": "later refused", "db_connection": listener.url()})
    assert created.status_code == 201, created.json_body
    task_id = created.json_body["data"]["task_id"]
    assert post_json(client, f"{TASKS}/{task_id}/table-list", {"table_names": ["public.t"]}).status_code == 200
    monkeypatch.setenv("DATA_PIPELINE_ALLOWED_DB_HOSTS", "10.0.0.0/8")  # the list changed since the task was made

    _refused(post_json(client, f"{TASKS}/{task_id}/execute", {"execution_mode": "complete"}),
             f"127.0.0.1:{listener.port}")
    assert client.http.get(f"{TASKS}/{task_id}").json_body["data"]["status"] == "pending"  # nothing was claimed
    # a step Lambda of an execution started before the change checks before it connects
    with pytest.raises(DatabaseHostNotAllowed, match=f"127.0.0.1:{listener.port}"):
        ddl_generation.plan({"task_id": task_id}, None)
    assert listener.accepts == 0


def test_the_vector_restore_checks_its_database(client, listener, monkeypatch):
    monkeypatch.setenv("DATA_PIPELINE_ALLOWED_DB_HOSTS", f"127.0.0.1:{listener.port}")
    task_id = post_json(client, TASKS, {"task_name": "v", "db_connection": listener.url()}).json_body["data"]["task_id"]
    # no PGVECTOR_DB_URL / DATA_PIPELINE_DB_URL: the vectors go beside the task's own database
    monkeypatch.delenv("DATA_PIPELINE_DB_URL")
    monkeypatch.setenv("DATA_PIPELINE_ALLOWED_DB_HOSTS", "10.0.0.0/8")
    _refused(post_json(client, "/api/v0/data_pipeline/vector/restore", {"task_id": task_id}),
             f"127.0.0.1:{listener.port}")
    assert listener.accepts == 0


def test_on_aws_only_the_configured_database_is_allowed_by_default(client, monkeypatch):
    monkeypatch.setenv("DATA_PIPELINE_LOCAL", "0")
    monkeypatch.setenv("DATA_PIPELINE_API_KEY", "aws-key")  # a deployment always has authentication
    auth = {"Authorization": "Bearer aws-key"}
    socket_url = "postgresql://postgres:@/x?host=/tmp/pg-sock"
    res = post_json(client, f"{DATABASE}/tables", {"db_connection": socket_url}, auth)
    _refused(res, "/tmp/pg-sock")
    _refused(post_json(client, f"{DATABASE}/tables", {"db_connection": "postgresql://u@127.0.0.1:6000/x"}, auth),
             "127.0.0.1:6000")  # loopback is not allowed on AWS; 127.0.0.1:5432 would be: localhost:5432 is configured
    # the configured default (DATA_PIPELINE_DB_URL = localhost:5432, where nothing listens) is tried
    res = post_json(client, f"{DATABASE}/tables", {}, auth)
    assert res.status_code == 500 and "localhost:5432" in res.json_body["message"]
    assert "connection refused" in res.json_body["message"]


def test_the_connection_is_pinned_to_the_checked_address(listener):
    """A name whose DNS answer changes after the check (rebinding) is connected at the first, checked answer:
    libpq is handed that address and never resolves the name itself (`.invalid` resolves nowhere)."""
    answers = iter([["127.0.0.1"], ["10.255.255.1"]])
    asked = []

    def rebinding_dns(host: str, port: int) -> list[str]:
        asked.append(host)
        return next(answers)

    rule = hosts.parse_rule(f"127.0.0.1:{listener.port}")
    policy = hosts.HostPolicy((rule,), True, rebinding_dns)
    with pytest.raises(DatabaseConnectionError, match="the server closed the connection") as info:
        db.connect(f"postgresql://app:{SECRET}@rebind.invalid:{listener.port}/sales", policy=policy,
                   connect_timeout=5)
    assert not isinstance(info.value, DatabaseHostNotAllowed)
    assert asked == ["rebind.invalid"] and listener.accepts == 1



def test_a_task_database_that_does_not_resolve_is_a_400_naming_it(client):
    res = post_json(client, TASKS, {"task_name": "typo", "db_connection": "postgresql://u:pw@nosuch.invalid/x"})
    body = res.json_body
    assert res.status_code == 400 and body["error"]["code"] == "DATABASE_CONNECTION_ERROR"
    assert "nosuch.invalid:5432" in body["message"] and "DNS" in body["message"]


def test_the_validators_extended_protocol_connections_pass_the_same_check(listener, monkeypatch):
    """The SQL validator's psycopg 3 connections (db_pool.connect_extended) are opened by db.connect too: refused
    before connecting outside the list, pinned and worded by us inside it."""
    monkeypatch.setenv("DATA_PIPELINE_LOCAL", "1")
    monkeypatch.setenv("DATA_PIPELINE_ALLOWED_DB_HOSTS", "db.internal.example:5432")
    with pytest.raises(DatabaseHostNotAllowed, match=f"127.0.0.1:{listener.port}"):
        db_pool.connect_extended(listener.url(), connect_timeout=5)
    assert listener.accepts == 0
    monkeypatch.setenv("DATA_PIPELINE_ALLOWED_DB_HOSTS", f"127.0.0.1:{listener.port}")
    with pytest.raises(DatabaseConnectionError, match="the server closed the connection") as info:
        db_pool.connect_extended(listener.url(), connect_timeout=5)
    assert SECRET not in str(info.value) and listener.accepts == 1
