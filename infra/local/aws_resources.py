"""The AWS resources of the local stack, created in moto at every start: the bucket, the task table, a role,
one Lambda function per step (its code never runs: invocations go to the Chalice handler) and the state
machine from infra/data_pipeline.asl.json."""
from __future__ import annotations

import importlib
import io
import json
import zipfile
from collections.abc import Callable, Sequence
from typing import Any

from infra.local.lambdas import REGION
from infra.template import RESOURCES_PATH, find_placeholders, load_definition_text, placeholder_for, render_definition

STATE_MACHINE_NAME = "data-pipeline"


def create_aws_resources(client: Callable[[str], Any], *, endpoint_url: str, bucket: str, table_name: str,
                         function_names: Sequence[str], timeouts: dict[str, int], definition_text: str | None,
                         function_arn: Callable[[str], str]) -> str:
    """The bucket, the task table, a role, a Lambda function per step and the state machine; returns its ARN."""
    s3 = client("s3")
    s3.create_bucket(Bucket=bucket)
    _create_table(client, endpoint_url, table_name)
    iam = client("iam")
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"Service": "lambda.amazonaws.com"}}]}
    role_arn = iam.create_role(RoleName="data-pipeline-local", AssumeRolePolicyDocument=json.dumps(trust))[
        "Role"
    ]["Arn"]
    lam = client("lambda")
    code = tiny_zip()
    for name in function_names:
        # The code is never run: invocations are dispatched to the Chalice handler of that name.
        lam.create_function(FunctionName=name, Runtime="python3.11", Role=role_arn, Handler="index.handler",
                            Code={"ZipFile": code}, Timeout=timeouts.get(name, timeouts.get("*", 60)))
    text = definition_text if definition_text is not None else load_definition_text()
    substitutions = {placeholder_for(name): function_arn(name) for name in function_names}
    unknown = find_placeholders(text) - set(substitutions)
    if unknown:
        raise KeyError(f"state machine placeholders without a function: {sorted(unknown)}")
    machine = client("stepfunctions").create_state_machine(
        name=STATE_MACHINE_NAME, definition=render_definition(substitutions, text), roleArn=role_arn
    )
    return machine["stateMachineArn"]


def _create_table(client: Callable[[str], Any], endpoint_url: str, table_name: str) -> None:
    """The task table: the stores' own definition when available, else the CloudFormation one."""
    import boto3

    try:
        tasks = importlib.import_module("chalicelib.stores.tasks")
    except ImportError:
        tasks = None
    if tasks is not None and hasattr(tasks, "create_table"):
        resource = boto3.resource("dynamodb", region_name=REGION, endpoint_url=endpoint_url,
                                  aws_access_key_id="testing", aws_secret_access_key="testing")
        tasks.create_table(resource, table_name)
        return
    properties = json.loads(RESOURCES_PATH.read_text(encoding="utf-8"))["Resources"]["TasksTable"]["Properties"]
    client("dynamodb").create_table(
        TableName=table_name,
        **{key: properties[key] for key in ("BillingMode", "AttributeDefinitions", "KeySchema",
                                            "GlobalSecondaryIndexes")},
    )


def tiny_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.py", "def handler(event, context):\n    return event\n")
    return buffer.getvalue()
