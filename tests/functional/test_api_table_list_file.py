"""table_list_file resolved or refused at create (issue 8, finding 3): an s3:// URI of an allowed bucket, a .txt
under the local table-list directory, or the list itself; anything else a 4xx that creates nothing."""
from __future__ import annotations

import boto3
import pytest

from tests.functional.test_api_tasks import BASE, create
from tests.support.aws_api import api_environment, post_json, send_api_key


@pytest.fixture
def client(monkeypatch, tmp_path):
    with api_environment(monkeypatch, tmp_path) as c:
        yield c

WAYS = ("upload-table-list", "table_names", "s3://")


def total_tasks(client):
    return client.http.get(BASE).json_body["data"]["total"]


def test_table_list_file_names_a_file_in_the_table_list_dir(client, monkeypatch, tmp_path):
    folder = tmp_path / "lists"
    (folder / "sub").mkdir(parents=True)
    (folder / "tables.txt").write_text("# 高速公路\nbss_company\nods.orders, bss_company\n", encoding="utf-8")
    (folder / "sub" / "more.txt").write_text("public.bss_car_day_count\n", encoding="utf-8")
    monkeypatch.setenv("DATA_PIPELINE_TABLE_LIST_DIR", str(folder))
    res = post_json(client, BASE, {"table_list_file": "tables.txt", "task_name": "guide"})
    assert res.status_code == 201 and res.json_body["data"]["has_table_list"] is True, res.json_body
    task_id = res.json_body["data"]["task_id"]
    info = client.http.get(f"{BASE}/{task_id}/table-list-info").json_body["data"]
    assert info["tables"] == ["public.bss_company", "ods.orders"] and info["file_name"] == "table_list.txt"
    assert post_json(client, f"{BASE}/{task_id}/execute", {"execution_mode": "complete"}).status_code == 202
    for value in ("sub/more.txt", "./sub/../sub/more.txt", str(folder / "sub" / "more.txt")):
        task_id = create(client, table_list_file=value)
        info = client.http.get(f"{BASE}/{task_id}/table-list-info").json_body["data"]
        assert info["tables"] == ["public.bss_car_day_count"], value


def test_table_list_file_default_dir_is_the_current_directory(client, monkeypatch, tmp_path):
    monkeypatch.delenv("DATA_PIPELINE_TABLE_LIST_DIR", raising=False)
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    (tmp_path / "tables.txt").write_text("bss_service_area\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    task_id = create(client, table_list_file="tables.txt")
    info = client.http.get(f"{BASE}/{task_id}/table-list-info").json_body["data"]
    assert info["tables"] == ["public.bss_service_area"]


@pytest.fixture
def list_dir(monkeypatch, tmp_path):
    inside, outside = tmp_path / "inside", tmp_path / "outside"
    inside.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("outside_secret_table\n", encoding="utf-8")
    (inside / "escape.txt").symlink_to(outside / "secret.txt")
    (inside / "tables.csv").write_text("bss_company\n", encoding="utf-8")
    (inside / "empty.txt").write_text("# nothing\n", encoding="utf-8")
    (inside / "latin1.txt").write_bytes("bss_compañy\n".encode("latin-1"))
    (inside / "big.txt").write_text("bss_company\n" * 20, encoding="utf-8")
    (inside / "dir.txt").mkdir()
    monkeypatch.setenv("DATA_PIPELINE_TABLE_LIST_DIR", str(inside))
    monkeypatch.setenv("DATA_PIPELINE_MAX_UPLOAD_BYTES", "100")
    return outside


@pytest.mark.parametrize("value, status, resolved", [
    ("tables.txt", 400, False),                # what the guide sends, with no such file beside the server
    ("missing/tables.txt", 400, False),
    ("../outside/secret.txt", 400, False),
    ("escape.txt", 400, False),                # a symlink leading outside the directory
    ("OUTSIDE_ABSOLUTE", 400, False),
    ("dir.txt", 400, False),
    ("bad\x00name.txt", 400, False),
    ("https://example.com/tables.txt", 400, False),
    ("s3://another-bucket/tables.txt", 400, False),
    ("s3://dp-test-bucket/missing.txt", 400, False),
    ("s3://dp-test-bucket", 400, False),
    ("empty.txt", 400, True),                  # found, but not a usable list: the same rules as an upload
    ("latin1.txt", 400, True),
    ("tables.csv", 415, False),
    ("public.bss_company", 415, False),        # one table name: not a file (a list needs a comma or a newline)
    ("big.txt", 413, True),
])
def test_table_list_file_unresolvable_is_refused_and_creates_nothing(client, list_dir, value, status, resolved):
    value = str(list_dir / "secret.txt") if value == "OUTSIDE_ABSOLUTE" else value
    res = post_json(client, BASE, {"table_list_file": value, "task_name": "refused"})
    assert res.status_code == status, res.json_body
    error = res.json_body["error"]
    assert error["invalid_params"] == ["table_list_file"]
    if status == 400:
        assert error["type"] == "ValidationError"
    if not resolved:  # names the three ways to give a list
        for way in WAYS:
            assert way in error["details"], (way, error["details"])
    elif status == 400:
        assert value in error["details"]
    assert total_tasks(client) == 0  # no orphan task
    assert "outside_secret_table" not in res.body.decode("utf-8")  # nothing read outside the directory


def test_table_list_file_local_paths_only_on_the_local_stack(client, monkeypatch, tmp_path):
    (tmp_path / "tables.txt").write_text("bss_company\n", encoding="utf-8")
    monkeypatch.setenv("DATA_PIPELINE_TABLE_LIST_DIR", str(tmp_path))
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "data_pipeline-dev")  # what the Lambda runtime sets on AWS
    send_api_key(client, monkeypatch)
    res = post_json(client, BASE, {"table_list_file": "tables.txt"})
    assert res.status_code == 400 and "local" in res.json_body["error"]["details"]
    monkeypatch.setenv("DATA_PIPELINE_LOCAL", "1")
    assert create(client, table_list_file="tables.txt")
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME")
    monkeypatch.setenv("DATA_PIPELINE_LOCAL", "0")
    assert post_json(client, BASE, {"table_list_file": "tables.txt"}).status_code == 400
    assert total_tasks(client) == 1


def test_table_list_file_s3_uri_of_the_task_bucket_or_a_configured_bucket(client, monkeypatch):
    s3 = boto3.client("s3")
    s3.put_object(Bucket="dp-test-bucket", Key="lists/tables.txt", Body='bss_company\n"服务区"."订单"\n'.encode())
    s3.create_bucket(Bucket="shared-lists")
    s3.put_object(Bucket="shared-lists", Key="a/hw.txt", Body=b"\xef\xbb\xbfods.orders\n")
    s3.create_bucket(Bucket="not-listed")
    s3.put_object(Bucket="not-listed", Key="hw.txt", Body=b"ods.orders\n")
    s3.put_object(Bucket="dp-test-bucket", Key="lists/big.txt", Body=b"bss_company\n" * 20)
    s3.put_object(Bucket="dp-test-bucket", Key="lists/bad.txt", Body="bss_compañy\n".encode("latin-1"))
    monkeypatch.setenv("DATA_PIPELINE_TABLE_LIST_BUCKETS", "other, shared-lists")
    monkeypatch.setenv("DATA_PIPELINE_LOCAL", "0")  # S3 URIs are read on AWS as well
    send_api_key(client, monkeypatch)
    first = create(client, table_list_file="s3://dp-test-bucket/lists/tables.txt")
    info = client.http.get(f"{BASE}/{first}/table-list-info").json_body["data"]
    assert info["tables"] == ["public.bss_company", '"服务区"."订单"']
    stored = s3.get_object(Bucket="dp-test-bucket", Key=f"tasks/{first}/table_list.txt")["Body"].read()
    assert stored.decode("utf-8").splitlines() == info["tables"]
    second = create(client, table_list_file="s3://shared-lists/a/hw.txt")
    assert client.http.get(f"{BASE}/{second}/table-list-info").json_body["data"]["tables"] == ["ods.orders"]
    monkeypatch.setenv("DATA_PIPELINE_MAX_UPLOAD_BYTES", "100")
    for uri, status in (("s3://not-listed/hw.txt", 400), ("s3://dp-test-bucket/lists/big.txt", 413),
                        ("s3://dp-test-bucket/lists/bad.txt", 400), ("s3://shared-lists/a/hw.csv", 415)):
        res = post_json(client, BASE, {"table_list_file": uri})
        assert res.status_code == status, (uri, res.json_body)
    assert total_tasks(client) == 2


