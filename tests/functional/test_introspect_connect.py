"""Connecting to the business database: URL checks, masked URLs, password-free connection errors."""
from __future__ import annotations

import pytest

from chalicelib.errors import DatabaseConnectionError, InvalidConnectionString
from chalicelib.pipeline.db import connect, database_name, mask_url


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://alice:s3cret@db.example:5432/sales", "postgresql://alice:***@db.example:5432/sales"),
        ("postgres://alice:p@ss@host/db", "postgres://alice:***@host/db"),
        ("postgresql://postgres:@/db?host=/tmp/sock", "postgresql://postgres:@/db?host=/tmp/sock"),
        ("postgresql://bob@host/db", "postgresql://bob@host/db"),
        ("postgresql://host/db?user=x&password=zz&sslmode=require",
         "postgresql://host/db?user=x&password=***&sslmode=require"),
        ("host=h password='a b' dbname=d", "host=h password=*** dbname=d"),
        ("", ""),
    ],
)
def test_mask_url(url, masked):
    assert mask_url(url) == masked


def test_database_name():
    assert database_name("postgresql://u:p@h:5432/highway_db") == "highway_db"
    assert database_name("postgresql://postgres:@/t_abc?host=/tmp/x") == "t_abc"
    assert database_name("postgresql://h/my%20db") == "my db"
    assert database_name("postgresql://h") == ""


@pytest.mark.parametrize(
    "url",
    [
        "mysql://root:topsecret@localhost/db",
        "not a url topsecret",
        "",
        "postgresql://u:topsecret@host:notaport/db",
        "postgresql://u:topsecret@host:5432",
        "postgresql://u:topsecret@host/db?nonsense_option=1",
    ],
)
def test_malformed_connection_strings(url):
    with pytest.raises(InvalidConnectionString) as info:
        connect(url)
    assert info.value.status == 400
    assert info.value.code == "DATABASE_CONNECTION_ERROR"
    assert "topsecret" not in info.value.message
    assert info.value.__cause__ is None


def test_unreachable_host_hides_password():
    url = "postgresql://alice:topsecret@127.0.0.1:1/sales"
    with pytest.raises(DatabaseConnectionError) as info:
        connect(url, connect_timeout=2)
    assert not isinstance(info.value, InvalidConnectionString)
    assert info.value.status == 500
    assert "topsecret" not in info.value.message and "topsecret" not in str(info.value)
    assert "postgresql://alice:***@127.0.0.1:1/sales" in info.value.message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_connects_over_the_pgserver_socket(pg_url):
    conn = connect(pg_url, application_name="dp_test")
    try:
        with conn.cursor() as cur:
            cur.execute("select current_setting('application_name'), pg_client_encoding()")
            assert cur.fetchone() == ("dp_test", "UTF8")
    finally:
        conn.close()


def test_missing_database_is_a_connection_error(pg_url):
    head, _, query = pg_url.partition("?")
    url = head.rsplit("/", 1)[0] + "/no_such_db_xyz?" + query
    with pytest.raises(DatabaseConnectionError, match="no_such_db_xyz"):
        connect(url)
