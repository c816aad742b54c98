"""What `make package` ships: the app staged with the hashed lock installed into vendor/
(infra/lockfile.py `stage_project`), packaged by `chalice package` with the merge template, gives a template
cfn-lint accepts and a lean Lambda package holding exactly the lock. Needs the package index (pip)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.lockfile import LOCK, check_zip, read_pins, stage_project
from infra.template import STATE_MACHINE_RESOURCE, STEP_FUNCTION_NAMES, check_deployment_zip, logical_id_for

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def packaged(tmp_path_factory) -> Path:
    if not (ROOT / "app.py").exists():
        pytest.skip("app.py not written yet")
    out = tmp_path_factory.mktemp("package")
    merge = out / "merge-template.json"
    subprocess.run([sys.executable, "-m", "infra.template", "merge-template", str(merge)], cwd=ROOT, check=True)
    build = stage_project(out / "build")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_DEFAULT_REGION"] = "us-east-1"
    result = subprocess.run(
        [str(BIN / "chalice"), "--project-dir", str(build), "package", "--merge-template", str(merge),
         str(out / "sam")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out / "sam"


def test_cfn_lint_accepts_the_packaged_template(packaged):
    result = subprocess.run([str(BIN / "cfn-lint"), str(packaged / "sam.json")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_packaged_template_wires_functions_roles_and_machine(packaged):
    resources = json.loads((packaged / "sam.json").read_text(encoding="utf-8"))["Resources"]
    for name in STEP_FUNCTION_NAMES:
        function = resources[logical_id_for(name)]
        assert function["Type"] == "AWS::Serverless::Function"
        assert function["Properties"]["Role"] == {"Fn::GetAtt": ["StepLambdaRole", "Arn"]}
        assert function["Properties"]["Environment"]["Variables"]["DATA_PIPELINE_LOG_LEVEL"] == "INFO"
    assert resources["APIHandler"]["Properties"]["Role"] == {"Fn::GetAtt": ["ApiHandlerRole", "Arn"]}
    assert "Definition" in resources[STATE_MACHINE_RESOURCE]["Properties"]
    assert "DefaultRole" not in resources


def test_deployment_package_is_lean_and_ships_exactly_the_lock(packaged):
    assert check_deployment_zip(packaged / "deployment.zip") == []
    assert check_zip(read_pins(LOCK), packaged / "deployment.zip") == []


def test_the_api_reads_table_lists_only_from_the_buckets_it_is_given(packaged):
    template = json.loads((packaged / "sam.json").read_text(encoding="utf-8"))
    resources = template["Resources"]
    variables = resources["APIHandler"]["Properties"]["Environment"]["Variables"]
    assert variables["DATA_PIPELINE_TABLE_LIST_BUCKETS"] == {"Fn::Join": [",", {"Ref": "TableListBuckets"}]}
    statements = resources["ApiHandlerRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    extra = [s["Fn::If"] for s in statements if "Fn::If" in s and s["Fn::If"][1].get("Sid") == "TableListFiles"]
    assert len(extra) == 1 and extra[0][0] == "HasTableListBuckets" and extra[0][2] == {"Ref": "AWS::NoValue"}
    assert extra[0][1]["Action"] == "s3:GetObject"  # read only, and only *.txt objects of the named buckets
    assert "/*.txt" in json.dumps(extra[0][1]["Resource"])
    assert template["Parameters"]["TableListBuckets"]["Default"] == ""


def test_packaged_api_keeps_chalice_routes_and_adds_the_envelope_answers(packaged):
    """The deep merge adds the gateway responses and one ANY mock per path beside Chalice's own methods."""
    from infra.template import api_routes

    body = json.loads((packaged / "sam.json").read_text(encoding="utf-8"))["Resources"]["RestAPI"]["Properties"][
        "DefinitionBody"]
    assert body["x-amazon-apigateway-gateway-responses"]["MISSING_AUTHENTICATION_TOKEN"]["statusCode"] == "404"
    for path, methods in api_routes().items():
        operations = body["paths"][path]
        assert {m.upper() for m in operations if not m.startswith("x-")} == set(methods), path
        assert all(operations[m.lower()]["x-amazon-apigateway-integration"]["type"] == "aws_proxy" for m in methods)
        assert operations["x-amazon-apigateway-any-method"]["x-amazon-apigateway-integration"]["type"] == "mock"


def test_the_packaged_template_requires_an_auth_choice_on_every_route(packaged):
    """What cfn-lint accepted above is the template with authentication required (#12 item 1)."""
    from infra.template import secured_api_routes

    template = json.loads((packaged / "sam.json").read_text(encoding="utf-8"))
    assert "Default" not in template["Parameters"]["AuthMode"]
    resources = template["Resources"]
    assert resources["ApiKeyAuthorizer"]["Properties"]["Handler"] == "chalicelib.api.auth.api_key_authorizer"
    body = resources["RestAPI"]["Properties"]["DefinitionBody"]
    for path, methods in secured_api_routes().items():  # all but the console's static pages
        for method in methods:
            assert "Fn::If" in body["paths"][path][method.lower()]["security"], (method, path)


def test_a_package_without_the_data_files_of_chalicelib_is_refused(tmp_path):
    import zipfile

    bare = tmp_path / "bare.zip"
    with zipfile.ZipFile(bare, "w") as archive:
        archive.writestr("app.py", "")
    problems = check_deployment_zip(bare)
    assert any("chalicelib/providers/heuristic/data/labels.json" in p for p in problems), problems
