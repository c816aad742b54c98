"""The state machine definition, the merge template and the Chalice config agree with each other."""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from infra.template import (
    ASL_PATH,
    RESOURCES_PATH,
    STATE_MACHINE_RESOURCE,
    STEP_FUNCTION_NAMES,
    build_merge_template,
    check_deployment_zip,
    find_placeholders,
    load_definition_text,
    logical_id_for,
    placeholder_for,
    render_definition,
    step_substitutions,
)

ROOT = Path(__file__).resolve().parents[2]
RETRIED = {"Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException",
           "Lambda.TooManyRequestsException", "LLMRateLimited", "TransientError"}


def _definition() -> dict:
    return json.loads(load_definition_text())


def _all_states(states: dict) -> dict:
    found = {}
    for name, state in states.items():
        found[name] = state
        if state["Type"] == "Map":
            found.update(_all_states(state["ItemProcessor"]["States"]))
    return found


def _tasks() -> dict:
    return {name: s for name, s in _all_states(_definition()["States"]).items() if s["Type"] == "Task"}


def _resources() -> dict:
    return json.loads(RESOURCES_PATH.read_text(encoding="utf-8"))["Resources"]


def _fake_arn(name: str) -> str:
    return f"arn:aws:lambda:us-east-1:123456789012:function:{name}"


def test_statelint_accepts_the_definition(tmp_path):
    rendered = render_definition(step_substitutions(_fake_arn))
    path = tmp_path / "machine.json"
    path.write_text(rendered, encoding="utf-8")
    result = subprocess.run([str(Path(sys.executable).parent / "statelint"), str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_placeholder_per_step_function_and_nothing_else():
    assert find_placeholders(load_definition_text()) == {placeholder_for(n) for n in STEP_FUNCTION_NAMES}
    assert placeholder_for("step_prepare") == "StepPrepareArn"


def test_render_definition_refuses_a_missing_value():
    with pytest.raises(KeyError, match="StepFinalizeArn"):
        render_definition({"StepPrepareArn": "arn:x"})


def test_every_task_has_timeout_retry_and_catch():
    tasks = _tasks()
    assert {t["Resource"] for t in tasks.values()} == {f"${{{placeholder_for(n)}}}" for n in STEP_FUNCTION_NAMES}
    for name, task in tasks.items():
        assert task.get("TimeoutSeconds"), name
        retry = task["Retry"]
        assert all(r["BackoffRate"] >= 1 and r["MaxAttempts"] >= 2 for r in retry), name
        if name == "HandleFailure":
            # The failure handler is where a Catch would lead: it has a Retry only, then the Fail state.
            assert "Catch" not in task and _definition()["States"][task["Next"]]["Type"] == "Fail"
            continue
        assert set(retry[0]["ErrorEquals"]) == RETRIED, name
        (catch,) = task["Catch"]
        assert catch["ErrorEquals"] == ["States.ALL"] and catch["ResultPath"] == "$.error", name


def test_results_never_overwrite_the_task_id():
    for name, state in _all_states(_definition()["States"]).items():
        path = state.get("ResultPath")
        assert path is None or (path.startswith("$.") and path != "$.task_id"), name


def test_map_items_are_caught_one_by_one_and_concurrency_comes_from_the_plan():
    states = _definition()["States"]
    for name, concurrency in (("DdlTables", "$.plan.ddl_max_concurrency"), ("QaPairs", "$.plan.qa_max_concurrency"),
                              ("SqlValidationBatches", "$.validation.max_concurrency")):
        state = states[name]
        assert state["MaxConcurrencyPath"] == concurrency
        assert state["ItemSelector"]["task_id.$"] == "$.task_id"
        inner = state["ItemProcessor"]["States"]
        task = next(s for s in inner.values() if s["Type"] == "Task")
        failed = inner[task["Catch"][0]["Next"]]
        assert failed["Type"] == "Pass" and failed["Parameters"]["failed"] is True
        assert failed["Parameters"]["error.$"] == "$.error"


def test_state_timeouts_leave_room_for_the_lambda_timeout():
    """Each Lambda times out (with its own error) 30 s before the state machine gives up on it."""
    config = json.loads((ROOT / ".chalice" / "config.json").read_text(encoding="utf-8"))
    functions = config["stages"]["dev"]["lambda_functions"]
    assert set(functions) == set(STEP_FUNCTION_NAMES)
    by_placeholder = {placeholder_for(n): n for n in STEP_FUNCTION_NAMES}
    for name, task in _tasks().items():
        function = by_placeholder[task["Resource"][2:-1]]
        assert task["TimeoutSeconds"] == functions[function]["lambda_timeout"] + 30, name
        assert functions[function]["lambda_timeout"] <= 900


def test_merge_template_substitutes_every_step_function():
    machine = build_merge_template()["Resources"][STATE_MACHINE_RESOURCE]["Properties"]
    assert machine["Definition"] == _definition()
    assert machine["DefinitionSubstitutions"] == {
        placeholder_for(n): {"Fn::GetAtt": [logical_id_for(n), "Arn"]} for n in STEP_FUNCTION_NAMES
    }
    # No "${...}" in strings other than the Lambda ARNs (CloudFormation would try to substitute them).
    assert find_placeholders(ASL_PATH.read_text(encoding="utf-8")) == set(machine["DefinitionSubstitutions"])


def test_state_machine_role_invokes_exactly_the_step_functions():
    resources = _resources()
    (statement,) = resources["StateMachineRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "lambda:InvokeFunction"
    assert statement["Resource"] == [{"Fn::GetAtt": [logical_id_for(n), "Arn"]} for n in STEP_FUNCTION_NAMES]


def test_lambda_roles_are_scoped():
    resources = _resources()
    for role in ("ApiHandlerRole", "StepLambdaRole"):
        statements = resources[role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        # A conditional statement (Fn::If [condition, statement, AWS::NoValue]) is checked like the others.
        statements = [s["Fn::If"][1] if "Fn::If" in s else s for s in statements]
        for statement in statements:
            assert statement["Resource"] != "*", role
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert not any(a.endswith("*") for a in actions), role
        assert not any("states:" in str(s["Action"]) for s in statements if role == "StepLambdaRole")
    assert resources["APIHandler"]["Properties"]["Role"] == {"Fn::GetAtt": ["ApiHandlerRole", "Arn"]}
    for name in STEP_FUNCTION_NAMES:
        properties = resources[logical_id_for(name)]["Properties"]
        assert properties["Role"] == {"Fn::GetAtt": ["StepLambdaRole", "Arn"]}
        assert properties["Environment"]["Variables"]["DATA_PIPELINE_BUCKET"] == {"Ref": "DataBucket"}
    api_env = resources["APIHandler"]["Properties"]["Environment"]["Variables"]
    assert api_env["DATA_PIPELINE_STATE_MACHINE_ARN"] == {"Ref": STATE_MACHINE_RESOURCE}


def test_table_matches_the_task_store_definition():
    tasks = pytest.importorskip("chalicelib.stores.tasks")
    table = _resources()["TasksTable"]["Properties"]
    definition = tasks.TABLE_DEFINITION
    assert table["BillingMode"] == definition["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == definition["KeySchema"]

    def by_name(items, key):
        return sorted(items, key=lambda item: item[key])

    assert by_name(table["AttributeDefinitions"], "AttributeName") == by_name(
        definition["AttributeDefinitions"], "AttributeName"
    )
    assert by_name(table["GlobalSecondaryIndexes"], "IndexName") == by_name(
        definition["GlobalSecondaryIndexes"], "IndexName"
    )


def test_bucket_is_private_and_encrypted():
    bucket = _resources()["DataBucket"]["Properties"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]


def test_check_deployment_zip_flags_local_only_packages(tmp_path):
    good, bad = tmp_path / "good.zip", tmp_path / "bad.zip"
    with zipfile.ZipFile(good, "w") as archive:
        archive.writestr("app.py", "x")
        archive.writestr("numpy/__init__.py", "x")
        for data in ("providers/heuristic/data/column_roles.json", "providers/heuristic/data/labels.json",
                     "data/errors.json"):  # the vocabularies and the error catalogue must ship
            archive.writestr(f"chalicelib/{data}", "{}")
        for asset in sorted((ROOT / "chalicelib" / "console").iterdir()):  # and the console's static files
            archive.writestr(f"chalicelib/console/{asset.name}", "x")
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("pgserver/__init__.py", "x")
        archive.writestr("tokenizers-0.23.3.dist-info/METADATA", "x")
    assert check_deployment_zip(good) == []
    problems = check_deployment_zip(bad)
    assert any("pgserver" in p for p in problems) and any("tokenizers" in p for p in problems)


def test_sql_validation_fans_out_over_batches_and_merges_once():
    states = _definition()["States"]
    assert states["ShouldRunSqlValidation"]["Choices"][0]["Next"] == "SqlValidationPlan"
    plan, batches, merge = states["SqlValidationPlan"], states["SqlValidationBatches"], states["SqlValidationMerge"]
    assert plan["Resource"] == "${StepSqlValidationPlanArn}" and plan["Next"] == "SqlValidationBatches"
    # A Distributed Map: the items come from the plan's S3 manifest, the results go to S3 (ResultWriter).
    assert batches["ItemReader"]["Parameters"] == {"Bucket.$": plan["ResultPath"] + ".items.Bucket",
                                                   "Key.$": plan["ResultPath"] + ".items.Key"}
    assert batches["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert batches["ItemSelector"]["batch_index.$"] == "$$.Map.Item.Value.index"
    inner = batches["ItemProcessor"]["States"]
    assert inner["SqlValidationBatch"]["Resource"] == "${StepSqlValidationBatchArn}"
    assert inner["SqlValidationBatchFailed"]["Parameters"]["batch_index.$"] == "$.batch_index"
    assert batches["Next"] == "SqlValidationMerge"
    assert merge["Resource"] == "${StepSqlValidationMergeArn}"
    assert merge["Parameters"]["results.$"] == batches["ResultPath"]
    assert batches["ResultWriter"]["Parameters"]["Prefix.$"] == plan["ResultPath"] + ".results.Prefix"
    # The merge replaces the batch list and results with its small summary, then the pipeline goes on.
    assert merge["ResultPath"] == plan["ResultPath"] and merge["Next"] == "ShouldRunTrainingLoad"
    assert "SqlValidation" not in states


def test_fan_outs_that_grow_with_the_database_are_distributed_maps_over_s3():
    """DDL batches and validation batches grow with the database: their items come from an S3 manifest and
    their results go to S3, so no state carries them (256 KB quota). QA themes are bounded by a setting."""
    states = _definition()["States"]
    for name, plan in (("DdlTables", "$.ddl"), ("SqlValidationBatches", "$.validation")):
        state = states[name]
        assert "ItemsPath" not in state and state["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
        assert state["ItemReader"]["Resource"] == "arn:aws:states:::s3:getObject"
        assert state["ItemReader"]["Parameters"] == {"Bucket.$": f"{plan}.items.Bucket", "Key.$": f"{plan}.items.Key"}
        assert state["ResultWriter"]["Resource"] == "arn:aws:states:::s3:putObject"
        assert state["ResultWriter"]["Parameters"] == {"Bucket.$": f"{plan}.results.Bucket",
                                                       "Prefix.$": f"{plan}.results.Prefix"}
        # Only the ResultWriter's manifest reference goes on: {Bucket, Key}.
        assert set(state["ResultSelector"]) == {"Bucket.$", "Key.$"}
    assert states["QaPairs"]["ItemProcessor"]["ProcessorConfig"]["Mode"] == "INLINE"


def test_llm_errors_are_retried_per_item_with_full_jitter():
    states = _definition()["States"]
    for map_name, task_name in (("DdlTables", "DdlTable"), ("SqlValidationBatches", "SqlValidationBatch"),
                                ("QaPairs", "QaTheme")):
        task = states[map_name]["ItemProcessor"]["States"][task_name]
        retried = {error: retry for retry in task["Retry"] for error in retry["ErrorEquals"]}
        for error in ("LLMRateLimited", "LLMTimeout"):
            assert retried[error]["JitterStrategy"] == "FULL" and retried[error]["BackoffRate"] >= 2, task_name
            assert retried[error]["MaxDelaySeconds"] <= 60, task_name
        assert task["Catch"][0]["ErrorEquals"] == ["States.ALL"], task_name


def test_state_machine_role_reads_map_items_writes_map_results_and_starts_child_runs():
    resources = _resources()
    policy = resources["StateMachineMapRunPolicy"]["Properties"]
    assert policy["Roles"] == [{"Ref": "StateMachineRole"}]
    statements = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    assert statements["MapItemsAndResults"]["Action"] == ["s3:GetObject", "s3:PutObject"]
    assert statements["MapItemsAndResults"]["Resource"] == {"Fn::Sub": "${DataBucket.Arn}/tasks/*/work/maps/*"}
    assert statements["MapChildExecutions"]["Action"] == "states:StartExecution"
    assert statements["MapChildExecutions"]["Resource"] == {"Ref": STATE_MACHINE_RESOURCE}
    assert all(s["Resource"] != "*" for s in statements.values())
