"""moto's Step Functions executor asks for a Lambda client on every Task state, passing the state's credentials;
the local stack keeps one client per region and endpoint (infra/local/moto_patches.reuse_moto_lambda_clients).
That is exact only because moto's own `boto_client_for` never reads the credentials: what it builds with them is
what it builds without them (checked here against moto itself, so a moto that starts using them fails this)."""
from __future__ import annotations

import threading

from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
from moto.stepfunctions.parser.asl.component.state.exec.state_task.credentials import StateCredentials
from moto.stepfunctions.parser.asl.utils import boto_client

from infra.local.moto_patches import reuse_moto_lambda_clients

ROLE = StateCredentials(role_arn="arn:aws:iam::123456789012:role/step-functions")


def _described(client) -> tuple:
    credentials = client._request_signer._credentials
    return (client.meta.endpoint_url, client.meta.region_name, client.meta.service_model.service_name,
            credentials.access_key, credentials.secret_key, client.meta.config.retries,
            client.meta.config.parameter_validation)


def test_moto_builds_the_same_client_with_and_without_the_states_credentials():
    with_role = boto_client.boto_client_for("us-east-1", "lambda", ROLE)
    without = boto_client.boto_client_for("us-east-1", "lambda")
    assert with_role is not without  # moto builds a new one each time
    assert _described(with_role) == _described(without)
    assert _described(with_role)[3:5] == ("ak", "sk")  # moto's fixed keys, not the role's


def test_every_task_state_gets_the_one_client_of_its_region():
    real = boto_client.boto_client_for
    undo = reuse_moto_lambda_clients()
    try:
        assert reuse_moto_lambda_clients()() is None  # applied once: the second call patches nothing
        boto_client_for = lambda_eval_utils.boto_client_for
        first = boto_client_for(region="us-east-1", service="lambda", state_credentials=ROLE)
        clients = []
        threads = [threading.Thread(target=lambda: clients.append(
            boto_client_for(region="us-east-1", service="lambda", state_credentials=ROLE))) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert all(client is first for client in clients)
        assert boto_client_for(region="us-east-1", service="lambda") is first  # without credentials: the same
        other = boto_client_for(region="eu-west-1", service="lambda", state_credentials=ROLE)
        assert other is not first and other.meta.region_name == "eu-west-1"
        assert _described(first) == _described(real("us-east-1", "lambda"))
    finally:
        undo()
    assert lambda_eval_utils.boto_client_for is real
