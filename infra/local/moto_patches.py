"""Patches of moto for the local stack: DynamoDB conditional writes made atomic per item (as in DynamoDB),
three that take CPU out of moto's request path without changing what it answers, and the dispatch of moto's Lambda
invocations to the local handlers. moto's Distributed Map is completed in moto_map_patches.py, the AWS quotas it does
not enforce in moto_quota_patches.py. Each patch returns a function undoing it; applying one twice does nothing the
second time.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any


def make_moto_dynamodb_writes_atomic(monkeypatch: Any = None) -> Callable[[], None]:
    """moto checks a ConditionExpression and then writes without a lock; real DynamoDB does both atomically.

    Serialising moto's DynamoDB requests (parse, backend call and the serialisation of the answer, one request
    at a time) gives the local server and the tests the guarantee the code relies on in AWS (claims, id
    allocation), and no answer is serialised while another request updates the same item. The moto server
    runs under one GIL anyway, so this costs it little concurrency. Requests still go through botocore and
    moto's request parsing.
    With a pytest `monkeypatch` the patch is undone by it; otherwise call the returned function to undo.
    Applying it twice does nothing the second time.
    """
    from moto.dynamodb.responses import DynamoHandler

    original = DynamoHandler.call_action
    if getattr(original, "_data_pipeline_atomic", False):
        return lambda: None
    lock = threading.RLock()

    def call_action(self: Any) -> Any:
        with lock:
            return original(self)

    call_action._data_pipeline_atomic = True  # type: ignore[attr-defined]
    if monkeypatch is not None:
        monkeypatch.setattr(DynamoHandler, "call_action", call_action)
        return lambda: None
    DynamoHandler.call_action = call_action  # type: ignore[method-assign]

    def undo() -> None:
        DynamoHandler.call_action = original  # type: ignore[method-assign]

    return undo


def memoize_moto_host_lookup() -> Callable[[], None]:
    """moto's server finds the backend of every request by scanning hundreds of URL patterns (and listing its
    own modules on disk) under one lock: a fifth of the local stack's CPU. The answer depends only on the host,
    so it is remembered per host. Call the returned function to undo."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    original = DomainDispatcherApplication.get_backend_for_host
    if getattr(original, "_data_pipeline_memo", False):
        return lambda: None
    cache: dict[str | None, Any] = {}

    def get_backend_for_host(self: Any, host: str | None) -> Any:
        if host not in cache:
            cache[host] = original(self, host)
        return cache[host]

    get_backend_for_host._data_pipeline_memo = True  # type: ignore[attr-defined]
    DomainDispatcherApplication.get_backend_for_host = get_backend_for_host  # type: ignore[method-assign]

    def undo() -> None:
        DomainDispatcherApplication.get_backend_for_host = original  # type: ignore[method-assign]

    return undo


def reuse_moto_lambda_clients() -> Callable[[], None]:
    """moto's Step Functions executor builds a new boto3 Lambda client for every Task state it runs (tens of
    milliseconds of CPU each, on the server's GIL). botocore clients are thread-safe, so one per region and
    endpoint is kept. moto passes the state's credentials (a StateCredentials, on every Lambda task) but its
    `boto_client_for` never reads them: every client it builds is the same fixed-key client of the moto server, so
    the credentials are no part of the key (keyed on them, as before, every Task state still built its client:
    a twentieth of the server's GIL in a 10,000-table run, measured with py-spy). Call the returned function to
    undo."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils

    original = lambda_eval_utils.boto_client_for
    if getattr(original, "_data_pipeline_reuse", False):
        return lambda: None
    cache: dict[tuple[Any, ...], Any] = {}
    lock = threading.Lock()

    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        from moto.core.models import botocore_stubber
        from moto.settings import moto_server_port

        key = (region, service, botocore_stubber.enabled, moto_server_port())
        with lock:
            if key not in cache:
                cache[key] = original(region, service)
            return cache[key]

    boto_client_for._data_pipeline_reuse = True  # type: ignore[attr-defined]
    lambda_eval_utils.boto_client_for = boto_client_for

    def undo() -> None:
        lambda_eval_utils.boto_client_for = original

    return undo


def fast_moto_dynamodb_results() -> Callable[[], None]:
    """moto turns every DynamoDB answer into JSON with a generic, shape-driven serializer that walks each
    attribute of each item: tens of milliseconds per GetItem of a task with per-table progress, the largest CPU
    cost of a local run. DynamoDB's wire format is the item itself (`{"S": …}`, numbers as strings), so plain
    results are dumped as they are; anything JSON cannot hold as is (bytes of a binary attribute, datetimes of
    table descriptions) still goes through moto's serializer. Call the returned function to undo."""
    from moto.dynamodb.responses import DynamoResult

    original = DynamoResult.execute_result
    if getattr(original, "_data_pipeline_fast", False):
        return lambda: None

    def refuse(value: Any) -> Any:
        raise TypeError(f"not plain JSON: {type(value).__name__}")

    def execute_result(self: Any, context: Any) -> Any:
        if isinstance(self.result, dict):
            try:
                body = json.dumps(self.result, separators=(",", ":"), default=refuse)
            except TypeError:
                pass
            else:
                return 200, {"Content-Type": "application/x-amz-json-1.0"}, body
        return original(self, context)

    execute_result._data_pipeline_fast = True  # type: ignore[attr-defined]
    DynamoResult.execute_result = execute_result  # type: ignore[method-assign]

    def undo() -> None:
        DynamoResult.execute_result = original  # type: ignore[method-assign]

    return undo


def dispatch_moto_lambda_invocations(invoke_handler: Callable[[str, Any, dict[str, str]], bytes]) -> Callable[[], None]:
    """moto's Lambda invocations (use_docker off) run `invoke_handler(function_name, body, response_headers)`, and
    its Step Functions executor runs state machines; returns the undo. One stack per process at a time."""
    from moto.awslambda_simple.models import LambdaSimpleBackend
    from moto.core.config import default_user_config

    if getattr(LambdaSimpleBackend.invoke, "_data_pipeline_dispatch", False):
        raise RuntimeError("another LocalStack is running in this process")
    saved_config = {
        "stepfunctions": dict(default_user_config.get("stepfunctions", {})),
        "lambda": dict(default_user_config.get("lambda", {})),
    }
    default_user_config.setdefault("stepfunctions", {})["execute_state_machine"] = True
    default_user_config.setdefault("lambda", {})["use_docker"] = False
    saved_invoke = LambdaSimpleBackend.invoke

    from moto.core.exceptions import JsonRESTError

    from infra.local.lambdas import RequestEntityTooLarge

    def invoke(backend: Any, function_name: str, qualifier: Any, body: Any, headers: Any,
               response_headers: Any) -> bytes:
        try:
            return invoke_handler(function_name, body, response_headers)
        except RequestEntityTooLarge as exc:
            error = JsonRESTError("RequestEntityTooLargeException", str(exc))
            error.code = 413
            raise error from None

    invoke._data_pipeline_dispatch = True  # type: ignore[attr-defined]
    LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign]

    def undo() -> None:
        LambdaSimpleBackend.invoke = saved_invoke  # type: ignore[method-assign]
        for section, values in saved_config.items():
            default_user_config[section] = values  # type: ignore[literal-required]

    return undo
