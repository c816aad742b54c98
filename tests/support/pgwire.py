"""A recording proxy for the PostgreSQL wire protocol: tests see every Query (simple protocol) and Parse
(extended protocol) message a client really sent to the server, byte for byte, as the server received it.

The proxy listens on 127.0.0.1 (a free port) and forwards each connection to the server's socket (a Unix socket
for pgserver, else TCP). Connect with `sslmode=disable&gssencmode=disable`, so the frontend stream is plain.
"""
from __future__ import annotations

import socket
import struct
import threading
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

_STARTUP_CODES = {80877103, 80877104, 196608}  # SSLRequest, GSSENCRequest, protocol 3.0 StartupMessage


@dataclass
class Message:
    kind: str  # "Q" (simple Query) or "P" (Parse)
    text: str


@dataclass
class _Recorder:
    messages: list[Message] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, body: bytes) -> None:
        if kind == "P":
            body = body[body.index(b"\0") + 1:]  # skip the statement name
        text = body[:body.index(b"\0")].decode("utf-8", errors="replace")
        with self.lock:
            self.messages.append(Message(kind, text))


class _FrontendParser:
    """Splits the client's byte stream into messages; records Query and Parse."""

    def __init__(self, recorder: _Recorder):
        self._buffer = b""
        self._started = False
        self._recorder = recorder

    def feed(self, data: bytes) -> None:
        self._buffer += data
        while True:
            if not self._started:
                if len(self._buffer) < 8:
                    return
                length, code = struct.unpack("!ii", self._buffer[:8])
                if len(self._buffer) < length:
                    return
                self._buffer = self._buffer[length:]
                self._started = code == 196608 or code not in _STARTUP_CODES
                continue
            if len(self._buffer) < 5:
                return
            kind = chr(self._buffer[0])
            (length,) = struct.unpack("!i", self._buffer[1:5])
            if len(self._buffer) < 1 + length:
                return
            body, self._buffer = self._buffer[5:1 + length], self._buffer[1 + length:]
            if kind in ("Q", "P"):
                self._recorder.add(kind, body)


class RecordingProxy:
    """`with RecordingProxy(server_url) as proxy:` — `proxy.url(dbname, user)` reaches the server through it;
    `proxy.take()` returns (and forgets) the messages recorded so far."""

    def __init__(self, server_url: str):
        parts = urlsplit(server_url)
        host = (parse_qs(parts.query).get("host") or [parts.hostname or "127.0.0.1"])[0]
        port = parts.port or 5432
        self._target: tuple[int, object] = (
            (socket.AF_UNIX, f"{host}/.s.PGSQL.{port}") if host.startswith("/") else (socket.AF_INET, (host, port)))
        self._recorder = _Recorder()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closing = False
        self._thread = threading.Thread(target=self._accept, name="pgwire-proxy", daemon=True)

    def __enter__(self) -> RecordingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing = True
        self._listener.close()

    def url(self, dbname: str, user: str) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}?sslmode=disable&gssencmode=disable"

    def take(self) -> list[Message]:
        with self._recorder.lock:
            messages, self._recorder.messages = self._recorder.messages, []
        return messages

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            family, address = self._target
            upstream = socket.socket(family, socket.SOCK_STREAM)
            upstream.connect(address)
            parser = _FrontendParser(self._recorder)
            threading.Thread(target=self._pipe, args=(client, upstream, parser.feed), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, None), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket, observe: object) -> None:
        try:
            while data := source.recv(65536):
                if observe is not None:
                    observe(data)  # type: ignore[operator]
                sink.sendall(data)
        except OSError:  # the other side closed: the connection is over, nothing to record
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:  # already shut down by the other pipe
                    pass
