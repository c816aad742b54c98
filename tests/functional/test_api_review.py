"""The review routes (validate one SQL, versioned pair-file writes, table-comment edits) and the vector counts,
through the Chalice test client inside moto, on a real PostgreSQL scratch database."""
from __future__ import annotations

import json
from contextlib import closing

import psycopg2
import pytest

from chalicelib.pipeline import db, introspect
from chalicelib.pipeline.models import TableDoc, TableRef
from chalicelib.stores.files import FileStore
from tests.support.aws_api import api_environment, post_json

BASE = "/api/v0/data_pipeline/tasks"
PAIR_FILE = "qs_shop_20250627_143052_pair.json"
PAIRS = [{"question": "订单一共有多少？", "sql": "SELECT count(*) FROM orders"},
         {"question": "最大的订单金额是多少？", "sql": "SELECT max(amount) FROM orders"}]


@pytest.fixture
def shop(scratch_db):
    conn = psycopg2.connect(scratch_db)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("create table orders (id int primary key, amount numeric(10,2), create_ts timestamp)")
        cur.execute("comment on table orders is '订单'")
        cur.execute("insert into orders select g, g * 1.5, now() from generate_series(1, 5) g")
    conn.close()
    return scratch_db


@pytest.fixture
def client(monkeypatch, tmp_path):
    with api_environment(monkeypatch, tmp_path) as c:
        yield c


BATCH = "work/tables/orders.json"  # ddl_generation's batch work file of the batch holding `orders`


def _seed(task_id: str, url: str) -> None:
    """What a run leaves: the pair file and its pointer, the table's TableDoc in its batch work file, its files."""
    store = FileStore()
    store.put_text(task_id, PAIR_FILE, json.dumps(PAIRS, ensure_ascii=False))
    store.put_text(task_id, "work/pair_file.txt", PAIR_FILE)
    with closing(db.connect(url)) as conn:
        found, _ = introspect.introspect_tables(conn, [TableRef("public", "orders")], exact_count_threshold=1000)
    doc = TableDoc(meta=found[TableRef("public", "orders")], table_comment="订单", column_comments={},
                   comment_sources={"": "database"}, enums={}, samples=[])
    store.put_text(task_id, BATCH, json.dumps({"docs": [doc.to_dict()], "files": {}}, ensure_ascii=False))
    store.put_text(task_id, "orders.ddl", "-- old\n")
    store.put_text(task_id, "orders_detail.md", "## orders\n")


@pytest.fixture
def task_id(client, shop):
    created = post_json(client, BASE, {"task_name": "审核", "db_connection": shop, "business_context": "网店订单"})
    assert created.status_code == 201, created.json_body
    task = created.json_body["data"]["task_id"]
    _seed(task, shop)
    return task


def put_json(client, path, body):
    return client.http.put(path, headers={"Content-Type": "application/json"},
                           body=json.dumps(body, ensure_ascii=False).encode())


def test_validate_sql_plans_on_the_tasks_database_and_never_runs_it(client, task_id, shop):
    ok = post_json(client, f"{BASE}/{task_id}/sql/validate", {"sql": "SELECT o.amount FROM public.orders o"})
    assert ok.status_code == 200, ok.json_body
    assert ok.json_body["data"] == {"valid": True, "error": None, "tables": ["public.orders"]}
    bad = post_json(client, f"{BASE}/{task_id}/sql/validate", {"sql": "SELECT nope FROM orders"}).json_body["data"]
    assert bad["valid"] is False and 'column "nope" does not exist' in bad["error"] and bad["tables"] == ["orders"]
    denied = post_json(client, f"{BASE}/{task_id}/sql/validate", {"sql": "DELETE FROM orders"}).json_body["data"]
    assert denied["valid"] is False and "rejected before reaching the database" in denied["error"]
    with closing(psycopg2.connect(shop)) as conn, conn.cursor() as cur:
        cur.execute("select count(*) from orders")
        assert cur.fetchone()[0] == 5


@pytest.mark.parametrize("body, status", [({"sql": "  "}, 400), ({}, 400), ({"sql": 5}, 400),
                                          ({"sql": "select 1\x00"}, 400), ({"sql": "select '\ud800'"}, 400)])
def test_validate_sql_refuses_an_empty_body(client, task_id, body, status):
    res = post_json(client, f"{BASE}/{task_id}/sql/validate", body)
    assert res.status_code == status and res.json_body["error"]["invalid_params"] == ["sql"]


def test_review_routes_answer_404_for_an_unknown_task(client):
    missing = f"{BASE}/task_20200101_000000"
    assert post_json(client, f"{missing}/sql/validate", {"sql": "select 1"}).status_code == 404
    assert client.http.get(f"{missing}/pairs").json_body["error"]["code"] == "TASK_NOT_FOUND"
    assert put_json(client, f"{missing}/pairs", {"base_version": 1, "author": "a", "pairs": []}).status_code == 404
    res = post_json(client, f"{missing}/tables/comments", {"table": "orders"})
    assert res.status_code == 404 and res.json_body["error"]["code"] == "TASK_NOT_FOUND"


def test_pairs_without_a_pair_file_is_409(client, shop):
    task = post_json(client, BASE, {"db_connection": shop}).json_body["data"]["task_id"]
    res = client.http.get(f"{BASE}/{task}/pairs")
    assert res.status_code == 409 and res.json_body["error"]["code"] == "PAIR_FILE_MISSING"


def test_save_edit_add_remove_writes_a_new_version_and_keeps_the_old(client, task_id):
    first = client.http.get(f"{BASE}/{task_id}/pairs").json_body["data"]
    assert first["version"] == 1 and first["file_name"] == PAIR_FILE and first["pairs"] == PAIRS
    assert [v["version"] for v in first["versions"]] == [1]
    new = [{"question": "订单总数是多少？", "sql": "SELECT count(*) FROM orders"},
           {"question": "平均订单金额？", "sql": "SELECT avg(amount) FROM orders"}]
    saved = put_json(client, f"{BASE}/{task_id}/pairs", {"base_version": 1, "author": "张三", "pairs": new})
    assert saved.status_code == 200, saved.json_body
    data = saved.json_body["data"]
    assert data["version"] == 2 and data["file_name"] == "qs_shop_20250627_143052_v002_pair.json"
    ops = sorted((c["op"], c["index"]) for c in data["changes"])
    assert ops == [("edit", 0), ("edit", 1)]
    latest = client.http.get(f"{BASE}/{task_id}/pairs").json_body["data"]
    assert latest["version"] == 2 and latest["pairs"] == new
    assert [(v["version"], v["author"]) for v in latest["versions"]] == [(1, "data_pipeline"), (2, "张三")]
    old = client.http.get(f"{BASE}/{task_id}/pairs?version=1").json_body["data"]
    assert old["pairs"] == PAIRS  # the previous version is kept as it was
    # remove one, add one
    third = put_json(client, f"{BASE}/{task_id}/pairs", {"base_version": 2, "author": "李四", "pairs": [
        new[0], {"question": "有几笔订单金额超过3？", "sql": "SELECT count(*) FROM orders WHERE amount > 3"}]})
    assert third.status_code == 200, third.json_body
    ops = [(c["op"], c["index"]) for c in third.json_body["data"]["changes"]]
    assert ops == [("edit", 1)]  # one pair replaced in place is an edit
    files = {f["file_name"]: f for f in client.http.get(f"{BASE}/{task_id}/files").json_body["data"]["files"]}
    assert files["qs_shop_20250627_143052_v003_pair.json"]["is_primary"]
    assert not files[PAIR_FILE]["is_primary"]
    assert files["qs_shop_20250627_143052_v002_changes.json"]["description"].startswith("Pair file review")
    log = json.loads(FileStore().get_text(task_id, "qs_shop_20250627_143052_v002_changes.json"))
    assert log["author"] == "张三" and log["base_version"] == 1 and log["created_at"]
    assert FileStore().get_text(task_id, "work/pair_file.txt") == "qs_shop_20250627_143052_v003_pair.json"
    removed = put_json(client, f"{BASE}/{task_id}/pairs", {"base_version": 3, "author": "王五", "pairs": [new[0]]})
    assert [c["op"] for c in removed.json_body["data"]["changes"]] == ["remove"]


def test_an_invalid_edit_is_refused_with_postgresqls_error_and_nothing_is_written(client, task_id):
    before = FileStore().list_files(task_id)
    edited = [PAIRS[0], {"question": PAIRS[1]["question"], "sql": "SELECT max(amonut) FROM orders"},
              {"question": "新问题", "sql": "SELECT * FROM no_such_table"}]
    res = put_json(client, f"{BASE}/{task_id}/pairs", {"base_version": 1, "author": "张三", "pairs": edited})
    assert res.status_code == 422, res.json_body
    body = res.json_body
    assert body["success"] is False and body["error"]["code"] == "SQL_VALIDATION_FAILED"
    errors = body["data"]["errors"]
    assert [e["index"] for e in errors] == [1, 2]
    assert 'column "amonut" does not exist' in errors[0]["error"]
    assert 'relation "no_such_table" does not exist' in errors[1]["error"]
    assert FileStore().list_files(task_id) == before


def test_a_stale_base_version_is_a_409(client, task_id):
    new = [PAIRS[0]]
    assert put_json(client, f"{BASE}/{task_id}/pairs", {"base_version": 1, "author": "a", "pairs": new}
                    ).status_code == 200
    res = put_json(client, f"{BASE}/{task_id}/pairs", {"base_version": 1, "author": "b", "pairs": PAIRS})
    assert res.status_code == 409 and res.json_body["error"]["code"] == "PAIRS_VERSION_CONFLICT"
    assert client.http.get(f"{BASE}/{task_id}/pairs").json_body["data"]["pairs"] == new


@pytest.mark.parametrize("body", [{"author": "a", "pairs": []}, {"base_version": 1, "pairs": []},
                                  {"base_version": 1, "author": "a", "pairs": [{"question": "q", "sql": ""}]},
                                  {"base_version": "1", "author": "a", "pairs": []},
                                  {"base_version": 1, "author": "a", "pairs": [{"question": "q\x00", "sql": "s"}]}])
def test_save_validation_errors_are_400(client, task_id, body):
    res = put_json(client, f"{BASE}/{task_id}/pairs", body)
    assert res.status_code == 400 and res.json_body["error"]["type"] == "ValidationError"


def test_unknown_version_is_404(client, task_id):
    res = client.http.get(f"{BASE}/{task_id}/pairs?version=7")
    assert res.status_code == 404 and res.json_body["error"]["invalid_params"] == ["version"]


def test_table_comments_rewrite_ddl_and_md_after_checking_the_ddl(client, task_id, shop):
    res = post_json(client, f"{BASE}/{task_id}/tables/comments", {
        "table": "public.orders", "table_comment": "网店订单表", "column_comments": {"amount": "订单金额（元）"}})
    assert res.status_code == 200, res.json_body
    assert res.json_body["data"]["files"] == ["orders.ddl", "orders_detail.md"]
    store = FileStore()
    ddl_text = store.get_text(task_id, "orders.ddl")
    assert "网店订单表" in ddl_text and "订单金额（元）" in ddl_text and "create table public.orders" in ddl_text
    assert "订单金额（元）" in store.get_text(task_id, "orders_detail.md")
    bundle = json.loads(store.get_text(task_id, BATCH))["docs"]
    assert bundle[0]["table_comment"] == "网店订单表" and bundle[0]["column_comments"]["amount"] == "订单金额（元）"
    with closing(psycopg2.connect(shop)) as conn, conn.cursor() as cur:  # the check left nothing behind
        cur.execute("select count(*) from pg_namespace where nspname like 'dp_ddl_check_%'")
        assert cur.fetchone()[0] == 0


def test_table_comments_errors(client, task_id):
    unknown_table = post_json(client, f"{BASE}/{task_id}/tables/comments", {"table": "public.customers"})
    assert unknown_table.status_code == 409 and unknown_table.json_body["error"]["code"] == "TABLE_NOT_DOCUMENTED"
    unknown_column = post_json(client, f"{BASE}/{task_id}/tables/comments",
                               {"table": "orders", "column_comments": {"colour": "颜色"}})
    # The table exists and the request is well formed: its documentation lacks the column (the task's state).
    assert unknown_column.status_code == 409 and "colour" in unknown_column.json_body["message"]
    assert unknown_column.json_body["error"]["code"] == "COLUMN_NOT_DOCUMENTED"
    assert unknown_column.json_body["error"]["invalid_params"] == ["column_comments"]
    assert post_json(client, f"{BASE}/{task_id}/tables/comments", {"table": ""}).status_code == 400
    bad_name = post_json(client, f"{BASE}/{task_id}/tables/comments", {"table": "a.b.c", "table_comment": "x"})
    assert bad_name.status_code == 400 and bad_name.json_body["error"]["code"] == "INVALID_TABLE_NAME"
    assert bad_name.json_body["error"]["invalid_params"] == ["table"]


def test_a_ddl_that_no_longer_executes_is_a_422_with_postgresqls_error(client, task_id, shop):
    # The table changed under the documentation: a type the stored DDL names is gone.
    store = FileStore()
    batch = json.loads(store.get_text(task_id, BATCH))
    batch["docs"][0]["meta"]["columns"][1]["data_type"] = "money_in_yuan"
    store.put_text(task_id, BATCH, json.dumps(batch))
    res = post_json(client, f"{BASE}/{task_id}/tables/comments", {"table": "orders", "table_comment": "订单"})
    assert res.status_code == 422 and res.json_body["error"]["code"] == "DDL_CHECK_FAILED"
    assert 'type "money_in_yuan" does not exist' in res.json_body["message"]
    assert store.get_text(task_id, "orders.ddl") == "-- old\n"


def test_vector_stats_counts_every_collection(client, scratch_db, monkeypatch):
    monkeypatch.setenv("PGVECTOR_DB_URL", scratch_db)
    empty = client.http.get("/api/v0/data_pipeline/vector/stats").json_body["data"]
    assert empty["collections"] == [{"name": n, "rows": 0} for n in ("ddl", "documentation", "sql")]
    assert empty["total"] == 0 and empty["table"] == "langchain_pg_embedding"
    with closing(psycopg2.connect(scratch_db)) as conn, conn, conn.cursor() as cur:
        cur.execute("create table langchain_pg_collection (uuid uuid primary key, name varchar, cmetadata json);"
                    "create table langchain_pg_embedding (id varchar primary key, collection_id uuid, document text);"
                    "insert into langchain_pg_collection values (gen_random_uuid(), 'sql', null);"
                    "insert into langchain_pg_embedding select g::text, uuid, 'd' from langchain_pg_collection, "
                    "generate_series(1, 3) g")
    data = client.http.get("/api/v0/data_pipeline/vector/stats").json_body["data"]
    assert {c["name"]: c["rows"] for c in data["collections"]} == {"ddl": 0, "documentation": 0, "sql": 3}
    assert data["total"] == 3


def test_review_routes_need_the_key_when_configured(client, task_id, monkeypatch):
    monkeypatch.setenv("DATA_PIPELINE_API_KEY", "review-key")
    assert client.http.get(f"{BASE}/{task_id}/pairs").status_code == 401
    assert client.http.get("/api/v0/data_pipeline/vector/stats").status_code == 401
    ok = client.http.get(f"{BASE}/{task_id}/pairs", headers={"Authorization": "Bearer review-key"})
    assert ok.status_code == 200 and ok.json_body["data"]["pairs"][0]["question"] == "订单一共有多少？"
    raw = client.http.get(f"{BASE}/{task_id}/pairs", headers={"Authorization": "Bearer review-key"}).body
    assert "订单一共有多少？".encode() in raw  # UTF-8, not \\u escapes


def test_the_openapi_document_lists_the_review_routes(client):
    doc = client.http.get("/api/v0/openapi.json").json_body
    paths = doc["paths"]
    assert set(paths["/data_pipeline/tasks/{task_id}/pairs"]) == {"get", "put"}
    assert "422" in paths["/data_pipeline/tasks/{task_id}/pairs"]["put"]["responses"]
    assert "409" in paths["/data_pipeline/tasks/{task_id}/pairs"]["put"]["responses"]
    assert "post" in paths["/data_pipeline/tasks/{task_id}/sql/validate"]
    assert "422" in paths["/data_pipeline/tasks/{task_id}/tables/comments"]["post"]["responses"]
    assert "get" in paths["/data_pipeline/vector/stats"]


def test_two_saves_on_the_same_base_one_wins(client, task_id):
    """Two saves that both read version 1 before either wrote: the second finds the version file taken (S3's
    If-None-Match) and is a 409, not a silent overwrite."""
    from chalicelib.api import pair_versions
    from chalicelib.errors import PairsVersionConflict
    from chalicelib.stores.files import TaskFiles

    files = TaskFiles(task_id, FileStore())
    seen_by_both = pair_versions.load_versions(files)
    first = [PAIRS[0]]
    pair_versions.save_version(files, seen_by_both, "甲", first, pair_versions.diff_pairs(PAIRS, first))
    with pytest.raises(PairsVersionConflict):
        pair_versions.save_version(files, seen_by_both, "乙", PAIRS[1:], pair_versions.diff_pairs(PAIRS, PAIRS[1:]))
    assert client.http.get(f"{BASE}/{task_id}/pairs").json_body["data"]["pairs"] == first


def test_a_role_that_may_not_create_schemas_checks_the_ddl_in_pg_temp(client, shop):
    """The task's role may only read (no CREATE on the database): the DDL check runs in its temporary schema."""
    import uuid

    role = f"dp_reader_{uuid.uuid4().hex[:8]}"
    with closing(psycopg2.connect(shop)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"create role {role} login; grant select on orders to {role}")
    try:
        reader = shop.replace("postgresql://postgres:@", f"postgresql://{role}@")
        created = post_json(client, BASE, {"task_name": "只读", "db_connection": reader})
        assert created.status_code == 201, created.json_body
        task = created.json_body["data"]["task_id"]
        _seed(task, shop)
        with closing(psycopg2.connect(reader)) as conn, conn.cursor() as cur:
            cur.execute("select has_database_privilege(current_database(), 'CREATE')")
            assert cur.fetchone()[0] is False
        res = post_json(client, f"{BASE}/{task}/tables/comments", {"table": "orders", "table_comment": "订单（只读）"})
        assert res.status_code == 200, res.json_body
        assert "订单（只读）" in FileStore().get_text(task, "orders.ddl")
    finally:
        with closing(psycopg2.connect(shop)) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f"drop owned by {role}; drop role {role}")


def test_a_task_database_that_does_not_answer_is_a_400_naming_db_connection(client, monkeypatch):
    # Found by the fuzzer: a 500 before. The connection the task was given is wrong, not the service.
    created = post_json(client, BASE, {"task_name": "不可达", "db_connection": "postgresql://u:p@127.0.0.1:1/nowhere"})
    task = created.json_body["data"]["task_id"]
    res = post_json(client, f"{BASE}/{task}/sql/validate", {"sql": "SELECT 1"})
    assert res.status_code == 400, res.json_body
    assert res.json_body["error"]["code"] == "DATABASE_CONNECTION_ERROR"
    assert res.json_body["error"]["invalid_params"] == ["db_connection"]
    assert "does not answer" in res.json_body["message"] and ":p@" not in res.json_body["message"]
