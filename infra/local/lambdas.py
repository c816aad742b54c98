"""How the local stack runs a Lambda invocation: the Chalice handler of the function's name, either in this
process (tests: fast, patchable) or in a pool of warm worker processes (`make serve`, `make demo`, benchmarks).

A worker process is one Lambda execution environment: it imports the app once, then runs one invocation at a
time, with the environment of the parent copied in before each one. In one process the moto server, its
Step Functions executor and every step Lambda share one GIL; in workers the step Lambdas' CPU (their code,
boto3 and the LLM client) runs beside the server, as Lambda containers run beside AWS.

    python -m infra.local.lambdas worker <answer-fd> <module:factory>    # what the pool starts; not for humans
"""
from __future__ import annotations

import importlib
import json
import logging
import os
import queue
import select
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from infra.local.quotas import limit

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account
# Step Functions refuses state payloads above 256 KiB; steps must hand over files in S3, not data.
STATE_PAYLOAD_LIMIT = 256 * 1024
# Worker processes of `make serve` / `make demo` / the benchmarks / the soak: the widest Map of one task
# (ddl_generation's DATA_PIPELINE_DDL_MAX_CONCURRENCY, 5) plus one; more only adds memory on 2 cores.
DEFAULT_WORKERS = 6
# A worker gets this long beyond the function's timeout before it is killed, as Lambda kills a late sandbox.
KILL_GRACE_SECONDS = 5.0
# Chalice's timeout for a function the config does not name.
DEFAULT_TIMEOUT_SECONDS = 60

AppFactory = Callable[[], Any]
# DATA_PIPELINE_LAMBDA_TRACE=<file>: one JSON line per invocation appended to the file (when moto received it and
# answered, when the worker ran the handler, its CPU seconds and its AWS calls: count and seconds per operation),
# to see where a run's time goes (benchmarks/bench_complete_run.py). Off unless set; the workers read it at start.
TRACE_VARIABLE = "DATA_PIPELINE_LAMBDA_TRACE"
_TRACE = threading.local()  # what the worker reported about the invocation this thread dispatches


class LambdaContext:
    """What a Lambda handler gets as `context` (the attributes powertools and Chalice read)."""

    def __init__(self, function_name: str, timeout_seconds: int, memory_mb: int = 512) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{function_name}"
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = f"local/{self.aws_request_id}"
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class _MarshalError(Exception):
    pass


def error_payload(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}, ensure_ascii=False).encode("utf-8")


def run_handler(app: Any, name: str, raw_event: str, timeout_seconds: int) -> tuple[bytes, bool]:
    """Run the handler `name` of a Chalice app on a JSON event as Lambda does: (payload, function_error).

    Every failure goes back as Lambda's error document ({"errorType", "errorMessage"}) with function_error
    True, which the state machine's Retry/Catch match on."""
    started = time.monotonic()
    try:
        handler = app.handler_map.get(name)
        if handler is None:
            raise LookupError(f"no Chalice handler named {name!r} in the app")
        event = json.loads(raw_event) if raw_event.strip() else {}
        result = handler(event, LambdaContext(name, timeout_seconds))
        try:
            payload = json.dumps(result, ensure_ascii=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise _MarshalError(f"Unable to marshal response: {exc}") from exc
    except Exception as exc:  # every handler failure goes back to the state machine, as Lambda does
        error_type = "Runtime.MarshalError" if isinstance(exc, _MarshalError) else type(exc).__name__
        logger.warning("lambda %s failed: %s: %s", name, error_type, exc, exc_info=True)
        return error_payload(error_type, str(exc)), True
    if len(payload) > STATE_PAYLOAD_LIMIT:
        logger.warning("lambda %s returned %d bytes: above the Step Functions payload limit", name, len(payload))
    logger.info("lambda %s done in %.3f s", name, time.monotonic() - started)
    return payload, False


def factory_path(factory: AppFactory) -> str:
    """`module:function` of a module-level app factory, which a worker process can import."""
    module, qualname = getattr(factory, "__module__", None), getattr(factory, "__qualname__", "")
    if not module or "<" in qualname or "." in qualname:
        raise ValueError(f"Lambda workers need a module-level app factory, not {factory!r}")
    return f"{module}:{qualname}"


def load_factory(path: str) -> AppFactory:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


class _Worker:
    """One worker process: requests on its stdin, answers on a pipe of its own (its stdout stays the logs')."""

    def __init__(self, factory: str) -> None:
        read_fd, write_fd = os.pipe()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "infra.local.lambdas", "worker", str(write_fd), factory],
                stdin=subprocess.PIPE, pass_fds=(write_fd,), cwd=str(ROOT), env=_child_environment(),
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self._answers = os.fdopen(read_fd, "rb")

    def wait_ready(self, timeout: float) -> None:
        answer = self._read(timeout)
        if answer.get("ready") is not True:
            raise RuntimeError(f"Lambda worker did not start: {answer.get('error') or answer}")

    def call(self, request: dict[str, Any], timeout: float | None) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(request, ensure_ascii=False).encode("utf-8") + b"\n")
        self.process.stdin.flush()
        return self._read(timeout)

    def _read(self, timeout: float | None) -> dict[str, Any]:
        ready, _, _ = select.select([self._answers], [], [], timeout)
        if not ready:
            raise TimeoutError
        line = self._answers.readline()
        if not line:
            raise EOFError(f"Lambda worker exited (code {self.process.poll()})")
        return json.loads(line)

    def stop(self) -> None:
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
            self.process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        finally:
            self._answers.close()


def _child_environment() -> dict[str, str]:
    """This environment, with this process's import path: whatever module the factory lives in (the project,
    a test module imported by pytest) imports the same way in the worker."""
    env = dict(os.environ)
    paths = [str(ROOT)] + [p for p in sys.path if p and os.path.isdir(p)]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


class WorkerPool:
    """`size` warm worker processes; an invocation takes an idle one (or waits for one), as Lambda sends each
    concurrent request to its own execution environment. A worker that dies or overruns its timeout is
    replaced and the invocation fails with Lambda's error type for it."""

    def __init__(self, size: int, factory: AppFactory, start_timeout: float = 120.0) -> None:
        if size < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.size = size
        self.factory = factory_path(factory)
        self.start_timeout = start_timeout
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: list[_Worker] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        workers = [self._spawn() for _ in range(self.size)]  # they import the app in parallel
        for worker in workers:
            worker.wait_ready(self.start_timeout)
            self._idle.put(worker)

    def _spawn(self) -> _Worker:
        worker = _Worker(self.factory)
        with self._lock:
            self._all.append(worker)
        return worker

    def _retire(self, worker: _Worker) -> None:
        with self._lock:
            if worker in self._all:
                self._all.remove(worker)
        worker.process.kill()
        worker.stop()

    def invoke(self, name: str, raw_event: str, timeout_seconds: int, *, enforce_timeout: bool = True
               ) -> tuple[bytes, bool]:
        waited = time.time()
        worker = self._idle.get()
        _TRACE.__dict__.update(waited=time.time() - waited)
        request = {"function": name, "event": raw_event, "timeout": timeout_seconds, "env": dict(os.environ)}
        try:
            answer = worker.call(request, timeout_seconds + KILL_GRACE_SECONDS if enforce_timeout else None)
        except TimeoutError:
            self._replace(worker)
            return timed_out_payload(timeout_seconds), True
        except (EOFError, OSError, ValueError) as exc:
            self._replace(worker)
            return error_payload("Runtime.ExitError", f"RequestId: local Error: Runtime exited: {exc}"), True
        self._idle.put(worker)
        _TRACE.__dict__.update(answer.get("trace") or {})
        return answer["payload"].encode("utf-8"), bool(answer["function_error"])

    def _replace(self, worker: _Worker) -> None:
        self._retire(worker)
        fresh = self._spawn()
        try:
            fresh.wait_ready(self.start_timeout)
        except Exception:
            logger.exception("could not replace a Lambda worker")
            self._retire(fresh)
            raise
        self._idle.put(fresh)

    def stop(self) -> None:
        with self._lock:
            workers, self._all = self._all, []
        for worker in workers:
            worker.stop()


# -- the worker process ------------------------------------------------------------------------------------------


def _apply_environment(env: dict[str, str]) -> None:
    for name in [n for n in os.environ if n not in env]:
        del os.environ[name]
    for name, value in env.items():
        if os.environ.get(name) != value:
            os.environ[name] = value


def _warm_up() -> None:
    """Lambda's init phase: what every invocation of the project's steps builds on first use (boto3 clients,
    the HTTP stack of the OpenAI client, the clients of the configured chat and embedding endpoints) is built
    once per worker, before it takes invocations."""
    try:
        from chalicelib import aws
    except ImportError:  # another app (tests' small apps)
        return
    aws.get_s3(), aws.get_dynamodb(), aws.get_sfn()
    import openai

    client = openai.OpenAI(api_key="warm-up", base_url="http://127.0.0.1:9/v1")
    # The resources import their modules on first attribute access (a fifth of a second per worker, measured).
    _ = client.chat.completions, client.embeddings
    client.close()
    from chalicelib.steps.blueprint import prime_step_sandbox

    prime_step_sandbox()  # what a step function's init phase builds on AWS (chalicelib/steps/__init__.py)


def _trace_aws_calls() -> dict[str, list[float]]:
    """{operation: [calls, seconds]} of every botocore call in this worker process from now on (trace only)."""
    import botocore.client

    calls: dict[str, list[float]] = {}
    lock = threading.Lock()
    original = botocore.client.BaseClient._make_api_call

    def timed(self: Any, operation: str, params: Any) -> Any:
        started = time.time()
        try:
            return original(self, operation, params)
        finally:
            with lock:
                entry = calls.setdefault(operation, [0, 0.0])
                entry[0] += 1
                entry[1] += time.time() - started

    botocore.client.BaseClient._make_api_call = timed
    return calls


def worker_main(answer_fd: int, factory: str) -> int:
    answers = os.fdopen(answer_fd, "wb")

    def send(message: dict[str, Any]) -> None:
        answers.write(json.dumps(message, ensure_ascii=False).encode("utf-8") + b"\n")
        answers.flush()

    try:
        app = load_factory(factory)()
        _warm_up()
    except Exception as exc:
        send({"ready": False, "error": f"{type(exc).__name__}: {exc}"})
        return 1
    calls = _trace_aws_calls() if os.environ.get(TRACE_VARIABLE) else None
    send({"ready": True})
    for line in sys.stdin.buffer:
        request = json.loads(line)
        _apply_environment(request["env"])
        started, cpu = time.time(), time.process_time()
        payload, function_error = run_handler(app, request["function"], request["event"], request["timeout"])
        trace = {"started": started, "ended": time.time(), "cpu": time.process_time() - cpu}
        if calls is not None:
            trace["calls"] = dict(calls)
            calls.clear()
        send({"payload": payload.decode("utf-8"), "function_error": function_error, "trace": trace})
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "worker":
        sys.exit(__doc__)
    sys.exit(worker_main(int(sys.argv[2]), sys.argv[3]))


def lambda_timeouts() -> dict[str, int]:
    """Per-function timeouts from .chalice/config.json (dev stage), the one source the deployed functions' come
    from too: a function's `lambda_timeout`, else the stage's (under the key `*`), else Chalice's 60 s."""
    path = ROOT / ".chalice" / "config.json"
    if not path.exists():
        return {}
    stage = json.loads(path.read_text(encoding="utf-8")).get("stages", {}).get("dev", {})
    default = int(stage.get("lambda_timeout", DEFAULT_TIMEOUT_SECONDS))
    timeouts = {name: int(cfg.get("lambda_timeout", default))
                for name, cfg in stage.get("lambda_functions", {}).items()}
    timeouts["*"] = default
    return timeouts


class LambdaDispatcher:
    """Runs a Lambda invocation received by moto with the Chalice handler registered under that name: in this
    process, or in a pool of warm worker processes once `use_workers` was called."""

    def __init__(self, app_factory: AppFactory, timeouts: dict[str, int] | None = None) -> None:
        self._app_factory = app_factory
        self._app: Any = None
        self._lock = threading.Lock()
        self.timeouts = timeouts or {}
        self.workers: WorkerPool | None = None
        self._in_flight = 0
        self._settled = threading.Condition()

    @property
    def app(self) -> Any:
        with self._lock:
            if self._app is None:
                self._app = self._app_factory()
            return self._app

    def use_workers(self, count: int) -> None:
        """Start `count` worker processes; invocations go to them from now on."""
        pool = WorkerPool(count, self._app_factory)
        try:
            pool.start()
        except BaseException:
            pool.stop()  # the workers that did start
            raise
        self.workers = pool

    def stop_workers(self) -> None:
        if self.workers is not None:
            self.workers.stop()
            self.workers = None

    @staticmethod
    def handler_name(function_name: str) -> str:
        """`step_x`, `arn:aws:lambda:…:function:step_x` or `…:step_x:$LATEST` -> `step_x`."""
        if ":function:" in function_name:
            function_name = function_name.split(":function:", 1)[1]
        return function_name.split(":", 1)[0]

    def timeout_for(self, name: str) -> int:
        return self.timeouts.get(name, self.timeouts.get("*", DEFAULT_TIMEOUT_SECONDS))

    def invoke(self, function_name: str, body: Any, response_headers: dict[str, str]) -> bytes:
        """One invocation as Lambda runs it, within the quotas of infra/local/quotas.py: a request above the
        payload quota is refused (413 RequestEntityTooLargeException), a response above it is the function
        error `Function.ResponseSizeTooLarge`, and an invocation past the function's timeout is
        `Sandbox.Timedout`. Counted while it runs (wait_idle)."""
        with self._settled:
            self._in_flight += 1
        try:
            return self._invoke(function_name, body, response_headers)
        finally:
            with self._settled:
                self._in_flight -= 1
                self._settled.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """True once no invocation is running; False when some still are after `timeout` seconds. (A handler
        answered `Sandbox.Timedout` in this process runs on unobserved: it is no longer counted.)"""
        deadline = time.monotonic() + timeout
        with self._settled:
            while self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._settled.wait(remaining)
        return True

    def _invoke(self, function_name: str, body: Any, response_headers: dict[str, str]) -> bytes:
        name = self.handler_name(function_name)
        received = time.time()
        _TRACE.__dict__.clear()
        raw = body.decode("utf-8") if isinstance(body, bytes) else (body or "")
        payload_limit = limit("lambda_payload")
        if payload_limit is not None and len(raw.encode("utf-8")) > payload_limit:
            raise RequestEntityTooLarge(
                f"{len(raw.encode('utf-8'))} byte payload is too large for the RequestResponse invocation type "
                f"(limit {payload_limit} bytes)")
        timeout = self.timeout_for(name)
        enforced = limit("lambda_timeout") is not None
        if self.workers is not None:
            payload, function_error = self.workers.invoke(name, raw, timeout, enforce_timeout=enforced)
        elif enforced:
            payload, function_error = run_with_timeout(self.app, name, raw, timeout)
        else:
            payload, function_error = run_handler(self.app, name, raw, timeout)
        if payload_limit is not None and not function_error and len(payload) > payload_limit:
            logger.warning("lambda %s answered %d bytes: above the invocation payload quota", name, len(payload))
            payload, function_error = error_payload(
                "Function.ResponseSizeTooLarge",
                f"Response payload size exceeded maximum allowed payload size ({payload_limit} bytes)."), True
        if function_error:
            response_headers["x-amz-function-error"] = "Unhandled"
        trace = os.environ.get(TRACE_VARIABLE)
        if trace:
            with open(trace, "a", encoding="utf-8") as out:
                out.write(json.dumps({"function": name, "received": received, "answered": time.time(),
                                      **_TRACE.__dict__}) + "\n")
        return payload


def run_with_timeout(app: Any, name: str, raw_event: str, timeout_seconds: int) -> tuple[bytes, bool]:
    """run_handler in a thread of its own, answered `Sandbox.Timedout` once the timeout passes, as Lambda
    answers. A thread cannot be killed as a sandbox is: the late handler runs on to its end unobserved (its
    writes may still land; the worker processes of `make serve` are killed instead)."""
    answer: list[tuple[bytes, bool]] = []
    thread = threading.Thread(target=lambda: answer.append(run_handler(app, name, raw_event, timeout_seconds)),
                              name=f"lambda-{name}", daemon=True)
    thread.start()
    thread.join(timeout_seconds)
    if answer:
        return answer[0]
    logger.warning("lambda %s timed out after %d s", name, timeout_seconds)
    return timed_out_payload(timeout_seconds), True


def timed_out_payload(timeout_seconds: int) -> bytes:
    return error_payload("Sandbox.Timedout", f"Task timed out after {timeout_seconds} seconds")


class RequestEntityTooLarge(Exception):
    """Lambda's answer (HTTP 413) to an invocation whose request is above the payload quota; becomes moto's
    error response in `dispatch_moto_lambda_invocations`."""
