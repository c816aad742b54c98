"""The local stand-in for AWS used by `make serve`, `make demo` and the tests.

moto runs as a server in this process (S3, DynamoDB, IAM, Lambda, Step Functions executing the real
state machine from infra/data_pipeline.asl.json) and PostgreSQL with pgvector comes from pgserver (or from
DATA_PIPELINE_DB_URL / PGVECTOR_DB_URL). S3 and DynamoDB state persists under `.local/state` (persistence.py).
The dev-only glue of the project is here:
- moto's Lambda backend is patched so that a Task state invokes the Chalice handler of the same name, in
  this process or in warm worker processes (infra/local/lambdas.py);
- moto's DynamoDB requests are serialised (`make_moto_dynamodb_writes_atomic`) so that conditional writes
  are atomic per item as in real DynamoDB, and twelve patches take CPU out of moto's request path without
  changing what it answers (infra/local/moto_patches.py, moto_speed_patches.py);
- which database holds the business data and which the vectors (infra/local/databases.py);
- the AWS quotas moto does not enforce (payload sizes, history events, timeouts, item size), on unless
  DATA_PIPELINE_LOCAL_QUOTAS=off (infra/local/quotas.py);
- EventBridge's rules of infra/resources.json on execution status changes, delivered to their Lambda
  (infra/local/events.py).

    with LocalStack() as stack:                  # or stack = LocalStack(...).start(); ...; stack.stop()
        stack.sfn.start_execution(stateMachineArn=stack.state_machine_arn, input=...)
"""
from __future__ import annotations

import gc
import importlib
import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from infra.local.aws_resources import create_aws_resources
from infra.local.databases import (  # noqa: F401  (database_url, DatabaseTarget: re-exported)
    DEMO_DATABASE,
    VECTOR_DATABASE,
    Databases,
    DatabaseTarget,
    database_url,
    start_databases,
)
from infra.local.events import EVENT_FUNCTION_NAMES, ExecutionEvents, rules_from_template
from infra.local.lambdas import ACCOUNT_ID, REGION, AppFactory, LambdaDispatcher, lambda_timeouts
from infra.local.local_patches import apply_local_patches
from infra.local.moto_patches import make_moto_dynamodb_writes_atomic  # noqa: F401  (re-exported)
from infra.local.persistence import Journal, fail_interrupted_tasks, journaling_moto_server, restore
from infra.template import STEP_FUNCTION_NAMES

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
ENDED_KEPT = 1000  # ended executions remembered for wait_for_execution
SETTLE_SECONDS = 20.0  # how long stop() waits for the invocations in flight (and again for the events' handlers)
HEARD_END_RECHECK = 1.0  # seconds wait_for_execution waits on a heard end before asking the server anyway
GC_THRESHOLDS = (20_000, 20, 20)  # gen0 allocations, gen0 runs per gen1, gen1 runs per gen2 (defaults 700, 10, 10)


def load_repo_app() -> Any:
    """The project's Chalice app (app.py at the repository root), imported on first use."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module("app").app


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalStack:
    """moto server + in-process Lambda dispatch + PostgreSQL, with the process environment pointing at them.

    root: where `.local/pgdata` (the embedded PostgreSQL, when one is needed) and `.local/state` (the persisted
        S3 and DynamoDB state) live; the repository by default.
    server_url: an existing PostgreSQL server (any database URL on it) standing in for the embedded one: the
        demo and vector databases are created there. Without it, pgserver is started under root. Either is
        used only for what DATA_PIPELINE_DB_URL / PGVECTOR_DB_URL leave unset (`resolve_databases`).
    app_factory: returns the Chalice app whose handlers run the Lambda functions (default: app.py).
    function_names / definition_text: the Lambda functions to create and the ASL (default: the project's
        step functions and infra/data_pipeline.asl.json); placeholders are `placeholder_for(name)`.
    load_demo: create and load the demo database (`highway_demo`) on first start.
    use_postgres: False for a stack without PostgreSQL (state machine and AWS resources only).
    lambda_workers: run the Lambda invocations in this many warm worker processes (infra/local/lambdas.py)
        instead of in this process; the app factory must then be a module-level function.
    persist: keep the bucket's objects and the task table's items in `root/.local/state` across restarts
        (infra/local/persistence.py); tasks left in_progress by a stopped server are failed "interrupted".
        False: moto's memory only, nothing written.
    event_functions: Lambda functions that are targets of the EventBridge rules of infra/resources.json (the
        reconcile Lambda); default: those of the project when the stack runs the project's step functions,
        none otherwise. An execution that ends is delivered to the rules that match it (infra/local/events.py).
    enforce_quotas: patch moto so that the AWS quotas of infra/local/quotas.py can hold; each is then on or off
        as the environment says when it is checked (DATA_PIPELINE_LOCAL_QUOTAS=off: all off).
    """

    def __init__(
        self,
        root: Path | str = ROOT,
        *,
        app_factory: AppFactory = load_repo_app,
        server_url: str | None = None,
        function_names: Sequence[str] = STEP_FUNCTION_NAMES,
        definition_text: str | None = None,
        load_demo: bool = True,
        demo_database: str = DEMO_DATABASE,
        use_postgres: bool = True,
        bucket: str = "data-pipeline-local",
        table_name: str = "data-pipeline-tasks",
        lambda_workers: int = 0,
        persist: bool = True,
        event_functions: Sequence[str] | None = None,
        enforce_quotas: bool = True,
    ) -> None:
        self.root = Path(root)
        self.server_url = server_url
        self.function_names = tuple(function_names)
        if event_functions is None:
            event_functions = EVENT_FUNCTION_NAMES if self.function_names == tuple(STEP_FUNCTION_NAMES) else ()
        self.event_functions = tuple(event_functions)
        self.enforce_quotas = enforce_quotas
        self.events: ExecutionEvents | None = None
        self._lambda_client: Any = None
        self.definition_text = definition_text
        self.load_demo = load_demo
        self.demo_database = demo_database
        self.use_postgres = use_postgres
        self.bucket = bucket
        self.table_name = table_name
        self.dispatcher = LambdaDispatcher(app_factory, lambda_timeouts())
        self.lambda_workers = lambda_workers
        self.persist = persist
        self.port: int | None = None
        self.state_machine_arn: str | None = None
        self.db_url: str | None = None
        self.pgvector_url: str | None = None
        self.databases: Databases | None = None
        self.embedded_label = "embedded"
        self.timings: dict[str, float] = {}
        self._moto: Any = None
        self._pg: Any = None
        self._saved_env: dict[str, str | None] = {}
        self._undo_patches: list[Callable[[], None]] = []
        self._saved_gc: tuple[int, int, int] | None = None
        self._journal: Journal | None = None
        self.restored: dict[str, int] = {}
        self.interrupted: list[str] = []
        # Executions of this stack's state machine that ended (ARN -> DescribeExecution answer), heard from moto's
        # executor when it is watched (the stack has event functions): wait_for_execution waits on this, no poll.
        self._ended: dict[str, dict[str, Any]] = {}
        self._ended_changed = threading.Condition()

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> LocalStack:
        if self._moto is not None:
            return self
        try:
            started = time.monotonic()
            self._start_postgres()
            self.timings["postgres"] = time.monotonic() - started
            started = time.monotonic()
            self._start_moto()
            self._set_environment()
            self._create_resources()
            self._start_events()
            self.timings["moto"] = time.monotonic() - started
            if self.persist:
                started = time.monotonic()
                self._restore_state()
                self.timings["restore"] = time.monotonic() - started
            if self.lambda_workers:
                started = time.monotonic()
                self.dispatcher.use_workers(self.lambda_workers)  # they inherit the environment set above
                self.timings["lambda_workers"] = time.monotonic() - started
            self._tune_gc()
        except BaseException:
            self.stop()
            raise
        logger.info("local stack ready: AWS endpoint %s, state machine %s", self.endpoint_url, self.state_machine_arn)
        return self

    def _tune_gc(self) -> None:
        """moto, botocore's service models and the app are loaded by now: hundreds of thousands of long-lived
        objects that every full garbage collection of this process would scan again, in pauses of 0.1-0.3 s
        that stop the server and all its threads. They move to the permanent generation, and collections run
        less often (moto's state grows by many small objects per request). Undone by stop()."""
        self._saved_gc = gc.get_threshold()
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_THRESHOLDS[0], *GC_THRESHOLDS[1:])

    def stop(self) -> None:
        if self._moto is not None and self.state_machine_arn:
            self._settle()
        if self._saved_gc is not None:
            gc.set_threshold(*self._saved_gc)
            gc.unfreeze()
            self._saved_gc = None
        if self.events is not None:
            self.events.stop()
            self.events = None
        self.dispatcher.stop_workers()
        if self._journal is not None:
            if self._moto is not None and self._moto.journaling is not None:
                self._moto.journaling.detach()
            self._journal.close()
            self._journal = None
        if self._moto is not None:
            self._reset_moto()
            self._moto.stop()
            self._moto = None
        self._restore_lambda_backend()
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env = {}
        if self._pg is not None:
            self._pg.cleanup()  # stops the server only if no other process holds a handle
            self._pg = None

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _settle(self) -> None:
        """Before the stack goes down: the executions still running are stopped (their tasks then end `failed`
        through the execution-status rule, as on AWS) and the Lambda invocations in flight, the failure handlers'
        included, are waited for (at most SETTLE_SECONDS each time), so that no handler is left writing to a
        moto server that is gone (its connection errors were logged after the owner had stopped the stack)."""
        try:
            sfn = self.sfn
            pages = sfn.get_paginator("list_executions").paginate(stateMachineArn=self.state_machine_arn,
                                                                  statusFilter="RUNNING")
            running = [execution["executionArn"] for page in pages for execution in page["executions"]]
            for arn in running:
                sfn.stop_execution(executionArn=arn, error="LocalStack.Stopped", cause="the local stack is stopping")
        except Exception:  # the stack stops anyway; what could not be stopped is said
            logger.warning("could not stop the running executions before stopping the local stack", exc_info=True)
        if self.events is not None:
            self.events.drain(SETTLE_SECONDS)  # the ABORTED events reach the failure handler while moto is up
        if not self.dispatcher.wait_idle(SETTLE_SECONDS):
            logger.warning("Lambda invocations still running %.0f s after the local stack began to stop; it stops "
                           "anyway", SETTLE_SECONDS)

    # -- what callers use ------------------------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        if self.port is None:
            raise RuntimeError("LocalStack is not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def app(self) -> Any:
        return self.dispatcher.app

    @property
    def env(self) -> dict[str, str]:
        """The variables another process needs to use this stack (the moto server is reachable over HTTP)."""
        values = {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "MOTO_PORT": str(self.port),
            "DATA_PIPELINE_BUCKET": self.bucket,
            "DATA_PIPELINE_TABLE": self.table_name,
        }
        if self.state_machine_arn:
            values["DATA_PIPELINE_STATE_MACHINE_ARN"] = self.state_machine_arn
        if self.db_url:
            values["DATA_PIPELINE_DB_URL"] = self.db_url
        if self.pgvector_url:
            values["PGVECTOR_DB_URL"] = self.pgvector_url
        return values

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, region_name=REGION, endpoint_url=self.endpoint_url,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    @property
    def sfn(self) -> Any:
        return self.client("stepfunctions")

    def function_arn(self, name: str) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"

    def start_execution(self, payload: dict[str, Any], name: str | None = None) -> str:
        # Always named: moto's server names an unnamed execution "None", so a second one would collide.
        return self.sfn.start_execution(
            stateMachineArn=self.state_machine_arn,
            name=name or uuid.uuid4().hex,
            input=json.dumps(payload, ensure_ascii=False),
        )["executionArn"]

    def execution_arn(self, name: str) -> str:
        """The ARN of this stack's state machine's execution `name` (the task's execution_id)."""
        if not self.state_machine_arn:
            raise RuntimeError("LocalStack is not started")
        return f"{self.state_machine_arn.replace(':stateMachine:', ':execution:', 1)}:{name}"

    def wait_for_execution(self, execution_arn: str, timeout: float = 120.0, poll: float = 0.1) -> dict[str, Any]:
        """describe_execution once the execution left RUNNING; TimeoutError if it did not in time.

        When moto's executions are watched (a stack with event functions), this waits on their end as it is
        heard and asks the server only then, or every HEARD_END_RECHECK seconds should an end go unheard (a poll
        every 0.1 s costs the server's CPU, which the running execution shares); otherwise describe_execution is
        polled every `poll` seconds."""
        sfn = self.sfn
        deadline = time.monotonic() + timeout
        while True:
            if self.events is not None:
                with self._ended_changed:
                    self._ended_changed.wait_for(lambda: execution_arn in self._ended,
                                                 max(0.0, min(HEARD_END_RECHECK, deadline - time.monotonic())))
            described = sfn.describe_execution(executionArn=execution_arn)
            if described["status"] != "RUNNING":
                return described
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution still running after {timeout} s: {execution_arn}")
            if self.events is None or execution_arn in self._ended:
                time.sleep(poll)

    # -- PostgreSQL ------------------------------------------------------------------------------------------

    def _start_postgres(self) -> None:
        """Business data and vectors where the environment says; the embedded server (pgserver under root, or
        `server_url`) is started only for what the environment leaves unset (infra/local/databases.py)."""
        if not self.use_postgres:
            return
        started = start_databases(self.root, self.server_url, self.load_demo, self.demo_database)
        self.databases, self._pg, self.embedded_label = started
        self.db_url = self.databases.business.url
        self.pgvector_url = self.databases.vectors.url

    # -- moto ------------------------------------------------------------------------------------------------

    def _start_moto(self) -> None:
        # Each undo is kept as soon as its patch is on, so a failed start (stop() runs them) leaves none behind.
        apply_local_patches(self._undo_patches, self.dispatcher.invoke, enforce_quotas=self.enforce_quotas,
                            on_execution_end=self._publish_execution_end if self.event_functions else None)
        # One access-log line per moto request (thousands per run) costs CPU and buries the project's logs.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)

        self.port = _free_port()
        self._moto = journaling_moto_server(self.bucket, self.table_name, "127.0.0.1", self.port)
        self._moto.start()
        self._reset_moto()  # moto's backends are process-wide: start from nothing

    def _reset_moto(self) -> None:
        import urllib.request

        request = urllib.request.Request(self.endpoint_url + "/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()

    def _restore_lambda_backend(self) -> None:
        while self._undo_patches:
            self._undo_patches.pop()()

    def _set_environment(self) -> None:
        # In-process handlers and boto3 read these; moto's Step Functions executor reaches Lambda through
        # http://localhost:$MOTO_PORT. The state machine ARN is set once the machine exists.
        values = self.env
        values.setdefault("DATA_PIPELINE_LOG_LEVEL", os.environ.get("DATA_PIPELINE_LOG_LEVEL") or "INFO")
        for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_SECURITY_TOKEN"):
            self._set_env(name, None)
        for name, value in values.items():
            self._set_env(name, value)

    def _set_env(self, name: str, value: str | None) -> None:
        if name not in self._saved_env:
            self._saved_env[name] = os.environ.get(name)
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value

    @property
    def state_dir(self) -> Path:
        """Where the persisted S3 objects and DynamoDB items live (git-ignored `.local/`)."""
        return self.root / ".local" / "state"

    def _restore_state(self) -> None:
        """Replay the journal of earlier runs into the fresh moto, journal every write from now on, and fail
        the tasks whose execution was lost with the previous server (infra/local/persistence.py)."""
        journal = Journal(self.state_dir)
        journal.lock()
        self._journal = journal
        self.restored = restore(journal, self._moto.journaling.app, self.bucket, self.table_name)
        journal.open()
        self._moto.journaling.journal = journal
        self.interrupted = fail_interrupted_tasks(self.sfn) if self.restored["items"] else []
        logger.info("local state in %s: %d objects, %d items", self.state_dir, self.restored["objects"],
                    self.restored["items"])

    def _publish_execution_end(self, described: dict[str, Any]) -> None:
        if described.get("stateMachineArn") != self.state_machine_arn:
            return
        with self._ended_changed:
            self._ended[described["executionArn"]] = described
            while len(self._ended) > ENDED_KEPT:  # the oldest go: a long `make serve` runs many executions
                del self._ended[next(iter(self._ended))]
            self._ended_changed.notify_all()
        if self.events is not None:
            self.events.publish(described)

    def _start_events(self) -> None:
        """EventBridge's rules on this state machine's executions, delivered to their Lambda functions."""
        if not self.event_functions:
            return
        rules = rules_from_template(self.event_functions, self.state_machine_arn or "")
        self.events = ExecutionEvents(rules, self.invoke_lambda)

    def invoke_lambda(self, name: str, event: dict[str, Any]) -> tuple[Any, str | None]:
        """Invoke a Lambda function of the stack through moto's Lambda API: (decoded answer, FunctionError)."""
        if self._lambda_client is None:
            self._lambda_client = self.client("lambda")
        reply = self._lambda_client.invoke(FunctionName=name, Payload=json.dumps(event, ensure_ascii=False).encode())
        raw = reply["Payload"].read()
        return (json.loads(raw) if raw else None), reply.get("FunctionError")

    def _create_resources(self) -> None:
        self.state_machine_arn = create_aws_resources(
            self.client, endpoint_url=self.endpoint_url, bucket=self.bucket, table_name=self.table_name,
            function_names=self.function_names + self.event_functions, timeouts=self.dispatcher.timeouts,
            definition_text=self.definition_text, function_arn=self.function_arn)
        self._set_env("DATA_PIPELINE_STATE_MACHINE_ARN", self.state_machine_arn)


@contextmanager
def local_stack(**kwargs: Any) -> Iterator[LocalStack]:
    """`with local_stack(...) as stack:` — a started LocalStack, stopped on exit."""
    stack = LocalStack(**kwargs)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()
