"""A small pool of PostgreSQL connections shared by the threads of one invocation, and the psycopg 3
connections of the SQL validator (the extended query protocol, which psycopg2 never uses)."""
from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg

from chalicelib.pipeline import db

logger = logging.getLogger(__name__)


def connect_extended(url: str, *, application_name: str = "data_pipeline_validation",
                     connect_timeout: int = 10) -> psycopg.Connection:
    """A psycopg 3 connection (autocommit, UTF-8, bounded connect time) for statements that must go through
    Parse/Bind/Execute: PostgreSQL refuses more than one statement there ("cannot insert multiple commands into
    a prepared statement"), whatever a comment or quote trick hides.

    Opened by `db.connect`: the same URL rules, host allow-list (checked after DNS, connection pinned to the checked
    address) and password-free errors as every other connection.
    """
    return db.connect(url, application_name=application_name, connect_timeout=connect_timeout, driver="psycopg",
                      autocommit=True)


def _rollback(conn: Any) -> None:
    conn.rollback()  # end the read transaction before the connection serves another thread


class ConnectionPool:
    """At most `size` connections to `url`, each lent to one thread at a time (psycopg2 connections are not
    shared between threads); a thread waits while all are lent. A DDL batch borrows one per database phase of a
    table (none is held while the LLM answers), the SQL validator one per worker.

    `connect(url)` opens a connection (a validator's sets up its read-only session); `reset(conn)` runs when a
    connection comes back (default: roll back the read transaction before it serves someone else).
    """

    def __init__(self, url: str, size: int = 4, *, connect: Callable[[str], Any] | None = None,
                 reset: Callable[[Any], None] | None = _rollback):
        self._url = url
        self._size = max(1, size)
        self._connect = connect or db.connect
        self._reset = reset
        self._idle: list[Any] = []
        self._all: list[Any] = []
        self._opening = 0
        self._available = threading.Condition()

    def get(self) -> Any:
        with self._available:
            while not self._idle and len(self._all) + self._opening >= self._size:
                self._available.wait()
            if self._idle:
                return self._idle.pop()
            self._opening += 1
        try:
            conn = self._connect(self._url)
        except BaseException:
            with self._available:
                self._opening -= 1
                self._available.notify()
            raise
        with self._available:
            self._opening -= 1
            self._all.append(conn)
        return conn

    def release(self, conn: Any) -> None:
        if conn.closed:
            self.discard(conn)
            return
        if self._reset is not None:
            self._reset(conn)
        with self._available:
            self._idle.append(conn)
            self._available.notify()

    def discard(self, conn: Any) -> None:
        """Forget a broken connection (closed if it is not): its place can be opened again."""
        with self._available:
            if conn in self._all:
                self._all.remove(conn)
            self._available.notify()
        with contextlib.suppress(Exception):
            conn.close()

    @contextlib.contextmanager
    def lease(self) -> Iterator[Any]:
        """A connection for one phase; released (rolled back) after it, discarded when the phase failed."""
        conn = self.get()
        try:
            yield conn
        except BaseException:
            self.discard(conn)
            raise
        self.release(conn)

    def close(self) -> None:
        with self._available:
            conns, self._all, self._idle = self._all, [], []
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.close()
