"""A small OpenAI-compatible HTTP server for tests: scripted chat answers, deterministic embeddings.

Serves `POST /v1/chat/completions` and `POST /v1/embeddings` on 127.0.0.1 (a free port) from a thread.
Each test scripts what the endpoint answers (status, content or raw body, delay, headers such as
Retry-After); unscripted calls go to a default responder. Every received request is recorded (path, JSON body,
headers).

Endpoint limits, checked before a scripted answer is used (a refused request consumes none):
- `response_formats`: the `response_format` types the endpoint accepts (`text` always); another type gets a 400
  naming it, as servers without structured output answer;
- `context_limit`: a request whose messages take more tokens than this (the stub's own count, ~4 characters a
  token) gets OpenAI's 400 `context_length_exceeded`.
"""
from __future__ import annotations

import base64
import hashlib
import json
import math
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_DELAY_SECONDS = 30.0  # a scripted hang never outlives a test by much
MAX_RECORDED_REQUESTS = 10_000


@dataclass
class StubAnswer:
    """One scripted answer.

    `content` is the assistant message (a dict/list is sent as JSON text); `json_body` replaces the whole
    response body; `body` is sent raw (bytes or text) for malformed responses. Non-200 statuses without a
    body get an OpenAI-style error object.
    """

    status: int = 200
    content: Any = None
    json_body: Any = None
    body: str | bytes | None = None
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    usage: dict[str, int] | None = None


Responder = Callable[[dict[str, Any]], Any]


def _as_answer(item: Any) -> StubAnswer:
    if isinstance(item, StubAnswer):
        return item
    if isinstance(item, dict) and set(item) <= {"status", "content", "json_body", "body", "delay", "headers", "usage"}:
        return StubAnswer(**item)
    # Anything else is the assistant's message content.
    return StubAnswer(content=item)


def _token_estimate(text: str) -> int:
    return max(1, len(text) // 4)


def hash_embedding(text: str, dim: int) -> list[float]:
    """A deterministic unit vector for `text` (same text, same vector)."""
    values: list[float] = []
    counter = 0
    while len(values) < dim:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        values.extend((b - 127.5) / 127.5 for b in digest)
        counter += 1
    values = values[:dim]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


class _Server(ThreadingHTTPServer):
    # socketserver listens with a backlog of 5: a burst of concurrent calls (a DDL Map sends 50 at once) would
    # overflow it and the kernel would drop SYNs, which clients retry only after a second. A real endpoint
    # accepts them all.
    request_queue_size = 256


class LLMStub:
    """The server. Use as a context manager or call `start()` / `stop()`."""

    def __init__(self, *, embedding_dim: int = 16, default: Responder | None = None):
        self.embedding_dim = embedding_dim
        self.default: Responder | None = default
        self.response_formats: set[str] = {"json_schema", "json_object", "text"}
        self.context_limit: int | None = None
        self.requests: list[dict[str, Any]] = []
        self.active = 0  # requests being answered right now
        self.max_active = 0  # the most answered simultaneously
        self._queues: dict[str, deque[StubAnswer]] = {"chat": deque(), "embeddings": deque()}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- scripting ---------------------------------------------------------------------------------

    def script(self, *answers: Any, endpoint: str = "chat") -> LLMStub:
        """Queue answers (StubAnswer, a dict of its fields, or plain content) for the next calls."""
        with self._lock:
            self._queues[endpoint].extend(_as_answer(a) for a in answers)
        return self

    @property
    def pending(self) -> int:
        with self._lock:
            return sum(len(q) for q in self._queues.values())

    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        return [r["json"] for r in self.requests if r["path"].endswith("/chat/completions")]

    @property
    def base_url(self) -> str:
        assert self._server is not None, "stub not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> LLMStub:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
                return

            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                stub._handle(self)

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="llm-stub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> LLMStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- serving -----------------------------------------------------------------------------------

    def _next_answer(self, endpoint: str, payload: dict[str, Any]) -> StubAnswer | None:
        with self._lock:
            queue = self._queues[endpoint]
            if queue:
                return queue.popleft()
        if endpoint == "chat" and self.default is not None:
            return _as_answer(self.default(payload))
        return None

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            payload = json.loads(raw or b"{}")
        except ValueError:
            payload = {}
        path = handler.path.split("?", 1)[0]
        with self._lock:
            if len(self.requests) < MAX_RECORDED_REQUESTS:
                headers = {k.lower(): v for k, v in handler.headers.items()}
                self.requests.append({"path": path, "json": payload, "headers": headers, "time": time.monotonic()})
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if path.endswith("/chat/completions"):
                self._answer_chat(handler, payload)
            elif path.endswith("/embeddings"):
                self._answer_embeddings(handler, payload)
            else:
                self._send_json(handler, 404, {"error": {"message": f"unknown path {path}", "type": "not_found"}})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test); nothing to answer
        finally:
            with self._lock:
                self.active -= 1

    def _delay(self, answer: StubAnswer) -> None:
        if answer.delay > 0:
            self._stopping.wait(min(answer.delay, MAX_DELAY_SECONDS))

    def _send_raw(self, handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str],
                  content_type: str = "application/json") -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(body)
        handler.wfile.flush()

    def _send_json(self, handler: BaseHTTPRequestHandler, status: int, data: Any,
                   headers: dict[str, str] | None = None) -> None:
        body = json.dumps(data, ensure_ascii=False).encode("utf-8")
        self._send_raw(handler, status, body, headers or {})

    def _send_special(self, handler: BaseHTTPRequestHandler, answer: StubAnswer) -> bool:
        """Raw bodies, full JSON bodies and errors; True when the answer was sent."""
        if answer.body is not None:
            body = answer.body.encode("utf-8") if isinstance(answer.body, str) else answer.body
            self._send_raw(handler, answer.status, body, answer.headers)
            return True
        if answer.json_body is not None:
            self._send_json(handler, answer.status, answer.json_body, answer.headers)
            return True
        if answer.status != 200:
            error = {"error": {"message": f"stub error {answer.status}", "type": "stub_error", "code": answer.status}}
            self._send_json(handler, answer.status, error, answer.headers)
            return True
        return False

    def prompt_tokens(self, payload: dict[str, Any]) -> int:
        """The stub's count of a chat request's prompt tokens."""
        return _token_estimate("".join(str(m.get("content", "")) for m in payload.get("messages", [])))

    def _refusal(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        """The 400 body of a request this endpoint cannot take, or None."""
        wanted = (payload.get("response_format") or {}).get("type", "text")
        if wanted != "text" and wanted not in self.response_formats:
            return {"error": {"message": f"response_format type '{wanted}' is not supported by this model",
                              "type": "invalid_request_error", "param": "response_format", "code": None}}
        tokens = self.prompt_tokens(payload)
        if self.context_limit is not None and tokens > self.context_limit:
            return {"error": {"message": f"This model's maximum context length is {self.context_limit} tokens. "
                                         f"However, your messages resulted in {tokens} tokens.",
                              "type": "invalid_request_error", "param": "messages",
                              "code": "context_length_exceeded"}}
        return None

    def _answer_chat(self, handler: BaseHTTPRequestHandler, payload: dict[str, Any]) -> None:
        refusal = self._refusal(payload)
        if refusal is not None:
            self._send_json(handler, 400, refusal)
            return
        answer = self._next_answer("chat", payload)
        if answer is None:
            error = {"error": {"message": "llm_stub: unscripted chat request", "type": "invalid_request_error"}}
            self._send_json(handler, 400, error)
            return
        self._delay(answer)
        if self._stopping.is_set() or self._send_special(handler, answer):
            return
        content = answer.content
        if not isinstance(content, str):
            content = json.dumps(content, ensure_ascii=False)
        prompt_text = "".join(str(m.get("content", "")) for m in payload.get("messages", []))
        usage = answer.usage or {
            "prompt_tokens": _token_estimate(prompt_text),
            "completion_tokens": _token_estimate(content),
        }
        usage = {**usage, "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"]}
        self._send_json(handler, 200, {
            "id": f"chatcmpl-stub-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": payload.get("model", "stub-model"),
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
                "logprobs": None,
            }],
            "usage": usage,
        }, answer.headers)

    def _answer_embeddings(self, handler: BaseHTTPRequestHandler, payload: dict[str, Any]) -> None:
        answer = self._next_answer("embeddings", payload) or StubAnswer()
        self._delay(answer)
        if self._stopping.is_set() or self._send_special(handler, answer):
            return
        inputs = payload.get("input", [])
        if isinstance(inputs, str):
            inputs = [inputs]
        dim = int(payload.get("dimensions") or self.embedding_dim)
        texts = [i if isinstance(i, str) else json.dumps(i) for i in inputs]
        tokens = sum(_token_estimate(t) for t in texts)
        as_base64 = payload.get("encoding_format") == "base64"  # the openai client asks for base64 by default

        def encode(vector: list[float]) -> Any:
            if as_base64:
                return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
            return vector

        self._send_json(handler, 200, {
            "object": "list",
            "data": [{"object": "embedding", "index": n, "embedding": encode(hash_embedding(t, dim))}
                     for n, t in enumerate(texts)],
            "model": payload.get("model", "stub-embedding"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }, answer.headers)
