"""Database tool routes against a real PostgreSQL (pgserver) with the heuristic LLM provider."""
from __future__ import annotations

import psycopg2
import pytest

from tests.support.aws_api import api_environment, post_json

BASE = "/api/v0/database"


@pytest.fixture
def client(monkeypatch, tmp_path):
    with api_environment(monkeypatch, tmp_path) as c:
        yield c


@pytest.fixture
def business_db(scratch_db):
    conn = psycopg2.connect(scratch_db)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("create schema ods")
        cur.execute("create table public.bss_company (id varchar(32) primary key, company_name varchar(255))")
        cur.execute("comment on table public.bss_company is '存储高速公路管理公司信息'")
        cur.execute("comment on column public.bss_company.id is '主键ID'")
        cur.execute("insert into public.bss_company values ('1', '公司A'), ('2', '公司B')")
        cur.execute("create table ods.bss_orders (id int primary key)")
        cur.execute("create table public.other (id int)")
    conn.close()
    return scratch_db


def test_list_tables_with_schema_and_pattern(client, business_db):
    res = post_json(client, f"{BASE}/tables", {"db_connection": business_db, "schema": "public,ods",
                                               "table_name_pattern": "bss_*"})
    assert res.status_code == 200, res.json_body
    data = res.json_body["data"]
    assert sorted(data["tables"]) == ["ods.bss_orders", "public.bss_company"] and data["total"] == 2
    assert data["schemas"] == ["public", "ods"] and data["db_connection_info"]["database"].startswith("t_")


def test_table_ddl_both(client, business_db):
    res = post_json(client, f"{BASE}/table/ddl", {"db_connection": business_db, "table": "public.bss_company",
                                                  "business_context": "高速公路服务区管理系统", "type": "both"})
    assert res.status_code == 200, res.json_body
    data = res.json_body["data"]
    assert "create table" in data["ddl"].lower() and "bss_company" in data["md"]
    assert data["table_info"]["full_name"] == "public.bss_company" and data["table_info"]["field_count"] == 2
    assert data["table_info"]["comment"] == "存储高速公路管理公司信息"
    assert data["fields"][0]["column_name"] == "id" and data["fields"][0]["is_primary_key"] is True
    assert data["generation_info"]["output_type"] == "both"
    only_md = post_json(client, f"{BASE}/table/ddl", {"db_connection": business_db, "table": "bss_company",
                                                      "type": "md"}).json_body["data"]
    assert only_md["ddl"] is None and only_md["md"]


def test_database_tool_errors(client, business_db):
    missing = post_json(client, f"{BASE}/table/ddl", {"db_connection": business_db, "table": "public.nope"})
    assert missing.status_code == 404
    assert post_json(client, f"{BASE}/table/ddl", {"db_connection": business_db}).status_code == 400
    bad_type = post_json(client, f"{BASE}/table/ddl", {"db_connection": business_db, "table": "x", "type": "pdf"})
    assert bad_type.status_code == 400 and bad_type.json_body["error"]["invalid_params"] == ["type"]
    bad_url = post_json(client, f"{BASE}/tables", {"db_connection": "mysql://u:pw@h/db"})
    assert bad_url.status_code == 400 and bad_url.json_body["error"]["code"] == "DATABASE_CONNECTION_ERROR"
    down = post_json(client, f"{BASE}/tables", {"db_connection": "postgresql://u:topsecret@127.0.0.1:1/db"})
    assert down.status_code == 500 and down.json_body["error"]["code"] == "DATABASE_CONNECTION_ERROR"
    assert "topsecret" not in down.body.decode()


# -- honest provenance (issue 8, finding 7) -----------------------------------------------------------------------


def test_heuristic_comments_are_not_reported_as_llm(client, business_db):
    data = post_json(client, f"{BASE}/table/ddl", {"db_connection": business_db, "table": "public.bss_company",
                                                  "business_context": "高速公路服务区管理系统"}).json_body["data"]
    info = data["generation_info"]
    assert info["has_llm_comments"] is False and info["comment_provider"] == "heuristic"
    assert info["llm_provider"].startswith("heuristic")
    # id has a database comment; company_name gets the heuristic's dictionary meaning.
    assert info["comment_sources"] == {"database": 2, "heuristic": 1}
    assert data["fields"][1]["comment"] == "公司名称"


def test_llm_comments_are_reported_as_llm_with_the_real_openai_client(client, business_db, llm_stub, monkeypatch):
    import json

    monkeypatch.setenv("LLM_BASE_URL", llm_stub.base_url)
    monkeypatch.setenv("LLM_API_KEY", "sk-stub")
    monkeypatch.setenv("LLM_MODEL", "stub-model")
    llm_stub.script(json.dumps({"table_comment": "LLM 写的表注释", "columns": {"id": "LLM 编号",
                                                                       "company_name": "LLM 公司名"},
                                "enum_candidates": []}, ensure_ascii=False))
    data = post_json(client, f"{BASE}/table/ddl", {"db_connection": business_db, "table": "bss_company",
                                                  "business_context": "高速公路服务区管理系统"}).json_body["data"]
    assert len(llm_stub.chat_requests) == 1
    info = data["generation_info"]
    assert info["has_llm_comments"] is True and info["comment_provider"] == "llm"
    assert info["llm_provider"] == "openai-compatible:stub-model"
    # The database's own comments win and stay "database"; only company_name was written by the model.
    assert info["comment_sources"] == {"database": 2, "llm": 1}
    assert data["table_info"]["comment"] == "存储高速公路管理公司信息"
    assert {f["column_name"]: f["comment"] for f in data["fields"]} == {"id": "主键ID", "company_name": "LLM 公司名"}
