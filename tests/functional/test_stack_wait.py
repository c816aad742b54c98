"""LocalStack.wait_for_execution waits on the execution's end as moto's executor reports it: no DescribeExecution
poll while the execution runs (each costs the server CPU the run shares)."""
from __future__ import annotations

import json

from infra.local import stack as stack_module
from infra.local.stack import LocalStack

WAIT_ONE_SECOND = json.dumps({"StartAt": "Pause", "States": {"Pause": {"Type": "Wait", "Seconds": 1, "End": True}}})


def test_wait_for_execution_hears_the_end_without_polling(tmp_path, monkeypatch):
    monkeypatch.setattr(stack_module, "HEARD_END_RECHECK", 30.0)  # no safety re-check within this execution
    with LocalStack(tmp_path, use_postgres=False, persist=False, definition_text=WAIT_ONE_SECOND) as stack:
        described: list[str] = []
        make_client = stack.client

        def client(service):
            made = make_client(service)
            made.meta.events.register("before-call.states.DescribeExecution",
                                      lambda params, **kwargs: described.append(params["body"]))
            return made

        monkeypatch.setattr(stack, "client", client)
        arn = stack.start_execution({})
        assert stack.wait_for_execution(arn, timeout=30)["status"] == "SUCCEEDED"
        assert len(described) == 1  # one answer, read once the end was heard (a 0.1 s poll made about ten)
        assert stack.execution_arn(arn.rsplit(":", 1)[-1]) == arn
