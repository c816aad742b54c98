"""The template makes every deployment choose its authentication, keeps secrets out of Lambda environments, and
can put the database-facing Lambdas in a VPC (#12 items 1, 3, 6). cfn-lint on the packaged template:
tests/functional/test_infra_package.py."""
from __future__ import annotations

import json

import pytest

from infra.api_auth import API_KEY_SCHEME, IAM_SCHEME, AuthChoiceMissing
from infra.template import (
    API_FUNCTION_RESOURCE,
    RESOURCES_PATH,
    STEP_FUNCTION_NAMES,
    api_routes,
    build_merge_template,
    function_resources,
    logical_id_for,
    secured_api_routes,
)

SECRET_VARIABLES = ("DATA_PIPELINE_API_KEY", "DATA_PIPELINE_DB_URL", "PGVECTOR_DB_URL", "LLM_API_KEY",
                    "EMBEDDING_API_KEY")


def _resources_file() -> dict:
    return json.loads(RESOURCES_PATH.read_text(encoding="utf-8"))


def test_auth_mode_is_a_required_choice_between_a_secrets_manager_key_and_iam():
    parameter = build_merge_template()["Parameters"]["AuthMode"]
    assert "Default" not in parameter  # CloudFormation refuses a deployment that does not choose
    assert sorted(parameter["AllowedValues"]) == ["IAM", "SecretsManagerKey"]
    assert "ApiKey" not in build_merge_template()["Parameters"]  # the old "empty = no auth" parameter is gone


def test_every_route_requires_the_chosen_scheme():
    body = build_merge_template()["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
    assert set(body["securityDefinitions"]) == {API_KEY_SCHEME, IAM_SCHEME}
    authorizer = body["securityDefinitions"][API_KEY_SCHEME]["x-amazon-apigateway-authorizer"]
    assert authorizer["type"] == "token" and "ApiKeyAuthorizer.Arn" in authorizer["authorizerUri"]["Fn::Sub"]
    routes = secured_api_routes()
    assert len(routes) >= 15
    for path, methods in routes.items():
        for method in methods:
            assert body["paths"][path][method.lower()]["security"] == {
                "Fn::If": ["UseIamAuth", [{IAM_SCHEME: []}], [{API_KEY_SCHEME: []}]]}, (method, path)
    public = sorted(set(api_routes()) - set(routes))  # the console's static pages only (chalicelib/api/console.py)
    assert public == ["/console", "/console/{asset}"]
    assert all("security" not in body["paths"][path].get("get", {}) for path in public)


def test_a_template_without_an_auth_choice_fails_to_build_saying_why():
    no_choice = _resources_file()
    del no_choice["Parameters"]["AuthMode"]
    with pytest.raises(AuthChoiceMissing, match="no AuthMode parameter.*open to anyone who finds its URL"):
        build_merge_template(no_choice)

    defaulted = _resources_file()
    defaulted["Parameters"]["AuthMode"]["Default"] = "IAM"
    with pytest.raises(AuthChoiceMissing, match="has a Default"):
        build_merge_template(defaulted)

    widened = _resources_file()
    widened["Parameters"]["AuthMode"]["AllowedValues"].append("None")
    with pytest.raises(AuthChoiceMissing, match="must allow exactly"):
        build_merge_template(widened)


def test_the_command_line_build_fails_with_the_reason(tmp_path, monkeypatch):
    from infra import template

    no_choice = _resources_file()
    del no_choice["Parameters"]["AuthMode"]
    path = tmp_path / "resources.json"
    path.write_text(json.dumps(no_choice), encoding="utf-8")
    monkeypatch.setattr(template, "RESOURCES_PATH", path)
    with pytest.raises(AuthChoiceMissing, match="AuthMode"):
        template.main(["merge-template", str(tmp_path / "out.json")])
    assert not (tmp_path / "out.json").exists()


def test_no_lambda_environment_holds_a_secret_by_value():
    template = build_merge_template()
    resources = template["Resources"]
    for logical_id in function_resources():
        variables = resources[logical_id]["Properties"]["Environment"]["Variables"]
        assert "DATA_PIPELINE_KMS_KEY_ID" in variables or logical_id == logical_id_for("api_key_authorizer")
        for name in set(SECRET_VARIABLES) & set(variables):
            if name == "DATA_PIPELINE_API_KEY":  # generated into Secrets Manager, the Lambdas get its reference
                assert variables[name] == {"Fn::If": ["UseApiKeyAuth", {"Fn::Sub": "secretsmanager:${ApiKeySecret}"},
                                                      ""]}, logical_id
            else:  # a NoEcho parameter, documented to be given as a secretsmanager:/ssm: reference
                assert template["Parameters"][variables[name]["Ref"]]["NoEcho"] is True, (logical_id, name)
    secret = resources["ApiKeySecret"]
    assert secret["Type"] == "AWS::SecretsManager::Secret" and secret["Condition"] == "UseApiKeyAuth"
    assert "GenerateSecretString" in secret["Properties"]
    assert resources["TaskSecretsKey"]["Properties"]["EnableKeyRotation"] is True
    # The API seals (encrypt) and opens; the steps only open.
    assert resources["TaskSecretsSealPolicy"]["Properties"]["Roles"] == [{"Ref": "ApiHandlerRole"}]
    open_policy = resources["TaskSecretsOpenPolicy"]["Properties"]
    assert open_policy["Roles"] == [{"Ref": "StepLambdaRole"}]
    assert open_policy["PolicyDocument"]["Statement"][0]["Action"] == "kms:Decrypt"


def test_the_database_facing_lambdas_can_join_a_vpc():
    template = build_merge_template()
    resources = template["Resources"]
    assert template["Parameters"]["SubnetIds"]["Default"] == "" and "HasVpc" in template["Conditions"]
    for logical_id in (API_FUNCTION_RESOURCE, *(logical_id_for(n) for n in STEP_FUNCTION_NAMES)):
        assert resources[logical_id]["Properties"]["VpcConfig"] == {"Fn::If": [
            "HasVpc", {"SubnetIds": {"Ref": "SubnetIds"}, "SecurityGroupIds": {"Ref": "SecurityGroupIds"}},
            {"Ref": "AWS::NoValue"}]}, logical_id
    for role in ("ApiHandlerRole", "StepLambdaRole"):  # ENI permissions, only with a VPC
        managed = resources[role]["Properties"]["ManagedPolicyArns"]["Fn::If"]
        assert managed[0] == "HasVpc" and "AWSLambdaVPCAccessExecutionRole" in json.dumps(managed[1])
