"""Fuzzing: schemathesis drives the real local server (moto + in-process step Lambdas + PostgreSQL + Chalice's
local HTTP server) from the served OpenAPI document.

Bounded: every operation gets positive (schema-valid) and negative (schema-violating) requests, then a stateful
run follows the document's links (createTask's `task_id` into every task route, file lists into downloads), at
least MIN_REQUESTS in total, well under the time budget. Every check schemathesis has runs on every answer (no 5xx,
the documented status, content type, headers and schema, negative data rejected, valid data accepted, missing
headers, unsupported methods, `Allow`, use after free, resource availability, auth), plus ours: the envelope
(code == HTTP status, `error` on failures) except file downloads and the document itself, no stack trace, no
password. Path parameters and the values a schema cannot describe (a database that exists, a cursor the server
issued) draw from real ones (seeded before), so the fuzzer reaches the handlers' real paths, not only 404s.
Last, TRACE, OPTIONS, PUT, PATCH, DELETE and an unknown method on every path: 405 in the envelope, with `Allow`.
"""
from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter, defaultdict
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS as BUILT_IN_CHECKS
from schemathesis.checks import load_all_checks
from schemathesis.generation.stateful import run_state_machine_as_test
from schemathesis.specs.openapi.checks import positive_data_acceptance

pytestmark = pytest.mark.heavy

API_KEY = "fuzz-api-key-7f3a"
SECRET = "Fuzz-S3cret-Pa55word"  # the seeded task's database password: must never come back
MIN_REQUESTS = 1000
TIME_BUDGET_SECONDS = 300
EXAMPLES = {GenerationMode.POSITIVE: 30, GenerationMode.NEGATIVE: 24}
STATEFUL_SCENARIOS, STATEFUL_STEPS = 30, 6
OTHER_METHODS = ("TRACE", "OPTIONS", "PUT", "PATCH", "DELETE", "FROB")
# A request the schema allows but the task's state refuses, with the code the API documents for it (a schema
# describes requests, not the state of the task they name; stateful runs execute tasks created without a list).
# The seeded task's database does not answer (127.0.0.1:1): the review routes that connect to it refuse with 400
# DATABASE_CONNECTION_ERROR naming db_connection.
STATE_REFUSALS = {"TABLE_LIST_MISSING", "DATABASE_CONNECTION_ERROR"}
# A list given inline holds a comma or a newline after trimming (else it is read as a file name).
TABLE_LISTS = ["bss_company,", "public.bss_company,public.bss_service_area", "# tables\nbss_company\n"]
RAW_ROUTES = ("/openapi.json",)  # answered with the plain document
FILE_ROUTES = ("/files/{filename}", "/files/vector_bak/{filename}")  # answered with the file (or a redirect)
DEMO_TABLES = ["bss_company", "public.bss_service_area", "public.bss_car_day_count", "public.no_such_table"]
LEAKS = ("Traceback (most recent call last)", 'File "/', SECRET, API_KEY)


@pytest.fixture(scope="module")
def server(pg_url, tmp_path_factory):
    """The local stack and Chalice's HTTP server on a free port; the API key is required, as in production."""
    from infra.local.serve import api_base_url, start_api_server, stop_api_server
    from infra.local.stack import LocalStack

    mp = pytest.MonkeyPatch()
    mp.setenv("DATA_PIPELINE_API_KEY", API_KEY)
    stack = LocalStack(tmp_path_factory.mktemp("fuzz"), server_url=pg_url, demo_database="highway_fuzz")
    stack.start()
    api = start_api_server(stack, "127.0.0.1", 0)
    try:
        yield api_base_url(api)
    finally:
        stop_api_server(api)
        stack.stop()
        mp.undo()


@pytest.fixture(scope="module")
def session():
    with requests.Session() as s:
        s.headers["Authorization"] = f"Bearer {API_KEY}"
        yield s


def _post(session: requests.Session, url: str, body: dict[str, Any]) -> dict[str, Any]:
    res = session.post(url, json=body, timeout=60)
    assert res.status_code in (200, 201), res.text
    return res.json()["data"]


@pytest.fixture(scope="module")
def seeded(server, session) -> dict[str, Any]:
    """Tasks the fuzzer's path parameters draw from: one with a secret (unreachable) connection and a table
    list, one on the demo database with a table list, one bare."""
    tasks = f"{server}/data_pipeline/tasks"
    secret = _post(session, tasks, {
        "task_name": "fuzz secret", "table_list_file": "public.bss_company\npublic.bss_service_area",
        "db_connection": f"postgresql://fuzz_user:{SECRET}@127.0.0.1:1/fuzzdb", "business_context": "高速公路"})
    demo = _post(session, tasks, {"task_name": "fuzz demo", "business_context": "highway service areas"})
    _post(session, f"{tasks}/{demo['task_id']}/table-list", {"table_names": ["bss_company", "bss_service_area"]})
    bare = _post(session, tasks, {"task_name": "fuzz bare"})
    ids = [secret["task_id"], demo["task_id"], bare["task_id"]]
    names = ["table_list.txt", "data_pipeline.log", "missing.json", "vector_backup_log.txt"]
    return {"task_ids": ids, "file_names": names, "db_url": os.environ["DATA_PIPELINE_DB_URL"]}


def _with_real_values(document: dict[str, Any], seeded: dict[str, Any]) -> dict[str, Any]:
    """Valid task ids, file names, tables, table lists and connections are real ones (plus unknown ones): positive
    requests reach real tasks, files and tables; negative ones send anything else. Opaque cursors are left out
    (empty: the first page): only the server can issue one, for the filters it was issued with."""
    task_ids = {"type": "string", "enum": [*seeded["task_ids"], "task_20000101_000000"]}
    # Executing needs a table list and a reachable database: the demo task (or an unknown id).
    runnable = {"type": "string", "enum": [seeded["task_ids"][1], "task_20000101_000000"]}
    file_names = {"type": "string", "enum": seeded["file_names"]}
    db_url = {"type": "string", "enum": [seeded["db_url"]]}
    for path, item in document["paths"].items():
        for op in item.values():
            params = []
            for param in op.get("parameters", []):
                if param["name"] == "task_id":
                    param = {**param, "schema": runnable if path.endswith("/execute") else task_ids}
                elif param["name"] == "filename":
                    param = {**param, "schema": file_names}
                elif param["name"] == "cursor":
                    param = {**param, "schema": {"type": "string", "enum": [""]}}
                params.append(param)
            if params:
                op["parameters"] = params
            content = op.get("requestBody", {}).get("content", {})
            upload = content.get("multipart/form-data", {}).get("schema", {}).get("properties", {})
            if "file" in upload:
                upload["file"] = {"type": "string", "format": "binary", "enum": TABLE_LISTS}
            body = _component(document, content.get("application/json", {}).get("schema", {}))
            properties = dict(body.get("properties", {}))
            if path.startswith("/data_pipeline/vector/") and "task_id" in properties:
                properties["task_id"] = task_ids
            if path.endswith("/table-list") and "table_names" in properties:
                properties["table_names"] = {"type": "array", "items": {"type": "string", "enum": DEMO_TABLES},
                                             "minItems": 1}
            if "db_connection" in properties:
                properties["db_connection"] = db_url
            if "table_list_file" in properties:
                properties["table_list_file"] = {"type": "string", "enum": TABLE_LISTS}
            if "cursor" in properties:
                properties["cursor"] = {"type": "null"}
            if path.startswith("/database/") and "table" in properties:
                properties["table"] = {"type": "string", "enum": DEMO_TABLES}
            if properties:
                body["properties"] = properties
    return document


def _component(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """The schema itself when it is a local `$ref` (request bodies are components, one per model)."""
    if "$ref" in schema:
        return document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _body_json(response: Any) -> Any:
    try:
        return json.loads(response.content or b"")
    except ValueError:
        return None


@schemathesis.check
def envelope_answer(ctx, response, case):
    """Every answer is the envelope with code == HTTP status (`error` on failures), except the raw document
    and successful file downloads."""
    path = case.operation.path
    if (path in RAW_ROUTES or path.endswith(FILE_ROUTES)) and response.status_code < 400:
        return None
    body = _body_json(response)
    assert isinstance(body, dict), f"not a JSON object: {response.content[:200]!r}"
    assert body.get("code") == response.status_code, f"code {body.get('code')} != HTTP {response.status_code}"
    assert isinstance(body.get("message"), str), "no message"
    failed = response.status_code >= 400
    assert body.get("success") is (not failed), "success does not match the status"
    if failed:
        error = body.get("error")
        assert isinstance(error, dict) and error.get("code") and error.get("type"), "failure without error{}"
    else:
        assert "data" in body, "success without data"
    return None


@schemathesis.check
def nothing_leaks(ctx, response, case):
    """No stack trace, no password, no API key in any answer."""
    text = (response.content or b"").decode("utf-8", errors="replace")
    for leak in LEAKS:
        assert leak not in text, f"the answer contains {leak[:12]!r}…"
    return None


@schemathesis.check
def valid_data_accepted(ctx, response, case):
    """schemathesis's positive_data_acceptance, except a documented refusal for the task's state."""
    body = _body_json(response)
    if response.status_code == 400 and isinstance(body, dict) and \
            (body.get("error") or {}).get("code") in STATE_REFUSALS:
        return None
    return positive_data_acceptance(ctx, response, case)


load_all_checks()
CHECKS = [c for c in BUILT_IN_CHECKS.get_all() if c is not positive_data_acceptance and
          c.__name__ not in ("envelope_answer", "nothing_leaks", "valid_data_accepted")]
CHECKS += [valid_data_accepted, envelope_answer, nothing_leaks]


def _order(operation: Any) -> tuple[int, str]:
    """Task creation last: every listing answer covers every task (one S3 look-up each), so the run stays
    bounded when the listings see the seeded tasks rather than hundreds of fuzzed ones."""
    return (operation.method == "post" and operation.path == "/data_pipeline/tasks", "")


def test_fuzz_the_api(server, session, seeded, monkeypatch):
    monkeypatch.setenv("DATA_PIPELINE_API_KEY", API_KEY)  # the autouse fixture of tests/conftest.py removes it
    raw = session.get(f"{server}/openapi.json", timeout=30)
    assert raw.status_code == 200
    # Positive requests draw real values; negative ones are judged against the document as served.
    schemas = {GenerationMode.POSITIVE: schemathesis.openapi.from_dict(_with_real_values(raw.json(), seeded)),
               GenerationMode.NEGATIVE: schemathesis.openapi.from_dict(raw.json())}
    statuses: Counter[int] = Counter()
    per_operation: Counter[str] = Counter()
    by_status: defaultdict[str, Counter[int]] = defaultdict(Counter)
    failures: dict[str, str] = {}
    lock = threading.Lock()
    started = time.monotonic()
    print()
    by_mode = {mode: {(op.method, op.path): op for op in (r.ok() for r in schema.get_all_operations())}
               for mode, schema in schemas.items()}
    operations = sorted(by_mode[GenerationMode.POSITIVE].values(), key=_order)
    for positive in operations:
        label = f"{positive.method.upper()} {positive.path}"
        for mode, examples in EXAMPLES.items():
            operation = by_mode[mode][(positive.method, positive.path)]

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                      phases=[Phase.explicit, Phase.generate],
                      suppress_health_check=list(HealthCheck))
            def run(case):
                response = case.call(base_url=server, session=session, timeout=60)
                with lock:
                    statuses[response.status_code] += 1
                    per_operation[f"{case.operation.method.upper()} {case.operation.path}"] += 1
                    by_status[f"{case.operation.method.upper()} {case.operation.path}"][response.status_code] += 1
                case.validate_response(response, checks=CHECKS)

            try:
                run()
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collected, reported together
                text = str(exc)
                if "Unsatisfiable" in type(exc).__name__ or "cannot generate" in text.lower():
                    continue  # e.g. no negative data possible for an operation without inputs
                failures[f"{label} [{mode.value}]"] = f"{type(exc).__name__}: {text[:3000]}"
            print(f"  {time.monotonic() - started:6.1f} s  {label} [{mode.value}]: {per_operation[label]} requests",
                  flush=True)

    # Stateful: scenarios that follow the document's links, from a created task into every task route.
    stateful_started = time.monotonic()
    before = sum(statuses.values())
    machine = schemas[GenerationMode.POSITIVE].as_state_machine()

    class Workflow(machine):  # type: ignore[misc, valid-type]
        def get_call_kwargs(self, case):
            return {"base_url": server, "session": session, "timeout": 60}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            label = f"{case.operation.method.upper()} {case.operation.path}"
            with lock:
                statuses[response.status_code] += 1
                per_operation[label] += 1
                by_status[label][response.status_code] += 1
                stateful_labels.add(label)
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs or None,
                                   recorder=getattr(self, "recorder", None))

    stateful_labels: set[str] = set()
    try:
        run_state_machine_as_test(Workflow, settings=settings(
            max_examples=STATEFUL_SCENARIOS, stateful_step_count=STATEFUL_STEPS, deadline=None, database=None,
            derandomize=True, phases=[Phase.generate], suppress_health_check=list(HealthCheck)))
    except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collected, reported together
        failures["stateful"] = f"{type(exc).__name__}: {str(exc)[:3000]}"
    print(f"  {time.monotonic() - started:6.1f} s  stateful: {sum(statuses.values()) - before} requests in "
          f"{time.monotonic() - stateful_started:.1f} s, {len(stateful_labels)} operations reached", flush=True)

    # Methods the document does not list, on every path: 405 in the envelope, `Allow` naming the listed ones.
    document = raw.json()
    for path, item in document["paths"].items():
        url = server + path.replace("{task_id}", seeded["task_ids"][1]).replace("{filename}", "table_list.txt")
        allowed = {method.upper() for method in item}
        for method in (m for m in OTHER_METHODS if m not in allowed):  # PUT is listed on the pair-file path
            res = session.request(method, url, timeout=30)
            statuses[res.status_code] += 1
            body = _body_json(res) or {}
            assert res.status_code == 405 and body.get("code") == 405, (method, path, res.status_code, res.text[:300])
            assert body["error"]["code"] == "METHOD_NOT_ALLOWED" and body["success"] is False, (method, path)
            assert {m.strip() for m in res.headers["Allow"].split(",")} == allowed, (method, path, res.headers)

    # The key is required everywhere: without it, every operation answers 401 in the envelope.
    for operation in operations:
        url = server + operation.path.replace("{task_id}", seeded["task_ids"][0]).replace("{filename}", "x.txt")
        res = requests.request(operation.method.upper(), url, timeout=30)
        statuses[res.status_code] += 1
        body = _body_json(res) or {}
        assert res.status_code == 401 and body.get("code") == 401, (operation.path, res.text)
        assert body["error"]["code"] == "UNAUTHORIZED"

    elapsed = time.monotonic() - started
    total = sum(statuses.values())
    print(f"\nfuzz: {total} requests in {elapsed:.1f} s; statuses {dict(sorted(statuses.items()))}")
    for label, count in sorted(per_operation.items()):
        print(f"  {count:4d}  {label}  {dict(sorted(by_status[label].items()))}")
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
    assert total >= MIN_REQUESTS, f"only {total} requests generated"
    assert elapsed < TIME_BUDGET_SECONDS, f"fuzzing took {elapsed:.0f} s"
    assert not any(status >= 500 for status in statuses), statuses
    assert any(200 <= status < 300 for status in statuses), "no request got through"
    # The links lead somewhere: the stateful run reached the task routes behind a created task.
    assert {"POST /data_pipeline/tasks", "GET /data_pipeline/tasks/{task_id}"} <= stateful_labels, stateful_labels
    assert len([label for label in stateful_labels if "{task_id}" in label]) >= 6, stateful_labels
