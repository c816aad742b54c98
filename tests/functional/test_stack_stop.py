"""LocalStack.stop() while a Lambda runs (a test's teardown, Ctrl-C on `make serve`): the running executions are
stopped and the invocations in flight end while moto is still up (a module of its own: one stack per process)."""
from __future__ import annotations

import json
import os
import threading
import time

from chalice import Chalice

from infra.local.stack import LocalStack


def test_stop_stops_the_running_executions_and_waits_for_the_invocations_in_flight():
    """A stack stopped while a Lambda runs (a test's teardown, Ctrl-C on `make serve`): the execution is stopped,
    so no later state runs, and the handler in flight ends while moto is still up (its write lands, where it used
    to meet a closed port and log connection errors after the owner had stopped the stack)."""
    import boto3

    started, calls = threading.Event(), []
    app = Chalice(app_name="stack_settle")

    @app.lambda_function(name="tiny_slow_write")
    def slow_write(event, context):
        started.set()
        time.sleep(event["seconds"])
        s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
        s3.put_object(Bucket=os.environ["DATA_PIPELINE_BUCKET"], Key="tasks/t/late.txt", Body=b"late")
        calls.append("wrote")
        return {}

    @app.lambda_function(name="tiny_after")
    def after(event, context):
        calls.append("after")
        return {}

    machine = {"StartAt": "Slow", "States": {
        "Slow": {"Type": "Task", "Resource": "${TinySlowWriteArn}", "Next": "After"},
        "After": {"Type": "Task", "Resource": "${TinyAfterArn}", "End": True}}}
    stack = LocalStack(app_factory=lambda: app, function_names=["tiny_slow_write", "tiny_after"],
                       definition_text=json.dumps(machine), use_postgres=False, lambda_workers=0, persist=False)
    stack.start()
    try:
        stack.start_execution({"seconds": 1.5})
        assert started.wait(30)
    finally:
        stack.stop()
    assert calls == ["wrote"]  # the write landed, and the stopped execution ran no further state
