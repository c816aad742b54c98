"""A warehouse that declares no foreign key (tests/fixtures/nofk_warehouse.sql), run completely through the real
state machine twice: with the heuristic provider and with the stub LLM behind the real openai client. Each run
infers the relationships in ddl_generation, carries them in the TableDocs to qa_generation, and writes join pairs
along them that sql_validation finds valid."""
from __future__ import annotations

import json
import re

import psycopg2
import pytest

from tests.conftest import create_database, drop_database
from tests.fixtures.nofk_warehouse import BUSINESS_CONTEXT, EXPECTED, TABLES, load_nofk_warehouse

pytestmark = pytest.mark.slow

REVENUE_SQL = ("SELECT sa.service_area_name AS 服务区名称, SUM(d.pay_sum) AS 支付总金额 "
               "FROM public.bss_business_day_data d JOIN public.bss_service_area sa "
               "ON d.service_no = sa.service_area_no WHERE d.delete_ts IS NULL "
               "AND sa.delete_ts IS NULL GROUP BY sa.service_area_name ORDER BY 支付总金额 DESC LIMIT 10;")
TRAFFIC_SQL = ("SELECT sa.service_area_name AS 服务区名称, SUM(c.customer_count) AS 车辆数量 "
               "FROM public.bss_car_day_count c JOIN public.bss_service_area sa ON c.service_area_id = sa.id "
               "WHERE c.delete_ts IS NULL "
               "GROUP BY sa.service_area_name ORDER BY 车辆数量 DESC;")
THEMES = [
    {"topic_name": "服务区营收", "description": "各服务区的营业收入",
     "related_tables": ["public.bss_business_day_data", "public.bss_service_area"],
     "biz_entities": ["服务区"], "biz_metrics": ["支付总金额"]},
    {"topic_name": "服务区车流", "description": "各服务区的车流量",
     "related_tables": ["public.bss_car_day_count", "public.bss_service_area"],
     "biz_entities": ["服务区"], "biz_metrics": ["车辆数量"]},
]
PAIRS = {"服务区营收": [{"question": "营收最高的 10 个服务区是哪些？", "sql": REVENUE_SQL}],
         "服务区车流": [{"question": "各服务区的车流量合计是多少？", "sql": TRAFFIC_SQL}]}


@pytest.fixture(scope="module")
def nofk_url(pg_url):
    url = create_database(pg_url, "nofk_warehouse")
    load_nofk_warehouse(url)
    yield url
    drop_database(pg_url, "nofk_warehouse")


def _declared_fks(url: str) -> int:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("select count(*) from pg_constraint where contype = 'f'")
        return cur.fetchone()[0]


def _work(task_id: str, name: str):
    from chalicelib.stores.files import FileStore

    return json.loads(FileStore().get_text(task_id, name))


def _inferred(task_id: str) -> dict[tuple[str, str], tuple[str, str, str]]:
    from chalicelib.steps.ddl_generation import TABLE_DOCS
    from chalicelib.stores.files import FileStore

    found = {}
    names = [f["name"] for f in FileStore().iter_files(task_id, include_internal=True, prefix=TABLE_DOCS)]
    docs = [d for name in names for d in _work(task_id, name)["docs"]]
    assert len(docs) == len(TABLES)
    for doc in docs:
        assert doc["meta"]["foreign_keys"] == []
        for fk in doc["meta"]["inferred_keys"]:
            assert fk["inferred"] is True
            found[(doc["meta"]["ref"]["name"], fk["columns"][0])] = (fk["ref_table"], fk["ref_columns"][0],
                                                                      fk["evidence"])
    return found


def _pairs(pipeline, task_id: str) -> list[dict]:
    primary = [n for n, f in pipeline.files(task_id).items() if f["is_primary"]]
    assert len(primary) == 1, primary
    return json.loads(pipeline.file_text(task_id, primary[0]))


def _check_run(pipeline, task_id: str, status: dict, url: str) -> list[dict]:
    """What both runs must show: completed, the relationships inferred with Chinese evidence, every pair valid
    (sql_validation and EXPLAIN here); returns the pairs."""
    assert status["status"] == "completed", (status.get("error_message"), status.get("step_status"))
    assert status["results"]["ddl_generation"]["tables_succeeded"] == len(TABLES)
    inferred = _inferred(task_id)
    assert {key: value[:2] for key, value in inferred.items()} == EXPECTED
    assert inferred[("bss_business_day_data", "service_no")][2].startswith(
        "命名 service_no ↔ bss_service_area.service_area_no")
    assert all("抽样" in evidence and "命中" in evidence for _t, _c, evidence in inferred.values())
    validation = status["results"]["sql_validation"]
    assert validation["total"] > 0 and validation["valid_before"] == validation["total"], validation
    assert validation["dropped"] == 0
    pairs = _pairs(pipeline, task_id)
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        for pair in pairs:
            cur.execute("explain " + pair["sql"])
    assert _declared_fks(url) == 0  # still none: nothing was declared on the business database
    return pairs


def _join_pairs(sql: str) -> set[tuple[tuple[str, str], tuple[str, str]]]:
    """Every `ON a.x = b.y` of the SQL as ((table, column), (table, column)), aliases resolved."""
    tables = re.findall(r"(?:FROM|JOIN)\s+public\.(\w+)\s+(?:AS\s+)?(\w+)", sql, re.I)
    aliases = {alias: table for table, alias in tables}
    found = set()
    for left, lcol, right, rcol in re.findall(r"\bON\s+(\w+)\.(\w+)\s*=\s*(\w+)\.(\w+)", sql, re.I):
        found.add(((aliases[left], lcol), (aliases[right], rcol)))
    return found


def _along_inferred(pairs: list[dict]) -> set[tuple[str, str]]:
    """The (table, column) sources of the inferred relationships the pairs join along; every join of every pair
    must follow one (nothing else relates these tables)."""
    used = set()
    for pair in pairs:
        for a, b in _join_pairs(pair["sql"]):
            source = next((x for x, y in ((a, b), (b, a)) if EXPECTED.get(x) == y), None)
            assert source is not None, (pair["sql"], a, b)
            used.add(source)
    return used


def test_heuristic_run_joins_along_inferred_relationships(pipeline, nofk_url, monkeypatch):
    assert _declared_fks(nofk_url) == 0
    monkeypatch.setenv("DATA_PIPELINE_QUESTIONS_PER_THEME", "20")
    task_id, status = pipeline.run(TABLES, timeout=240, db_connection=nofk_url, business_context=BUSINESS_CONTEXT,
                                   db_name="nofk_warehouse", task_name="no-fk heuristic")
    pairs = _check_run(pipeline, task_id, status, nofk_url)
    used = _along_inferred(pairs)
    assert ("bss_business_day_data", "service_no") in used and len(used) >= 3, used
    from chalicelib.steps.ddl_generation import KEYS_FILE
    from chalicelib.steps.qa_generation import THEMES_FILE

    keys = _work(task_id, KEYS_FILE)  # read once by the plan for every table of the task
    assert ["public", "bss_service_area", "service_area_no", "varchar", "varchar", "服务区编码", "named"] in keys
    assert {(row[1], row[2]) for row in keys if row[6] == "primary"} == {(t.split(".")[1], "id") for t in TABLES
                                                                        if "area_link" not in t}

    themes = _work(task_id, THEMES_FILE)
    assert len(themes[0]["related_tables"]) >= 3  # a cluster of tables, not one table per theme


def _prompt(request: dict) -> str:
    return "\n".join(str(m.get("content", "")) for m in request.get("messages", []) if m.get("role") == "user")


def _kind(prompt: str) -> str:
    for kind, marker in (("repair", '"repairs"'), ("pairs", '{"pairs"'), ("themes", '{"themes"'),
                         ("comments", '"table_comment"')):
        if marker in prompt:
            return kind
    raise AssertionError(f"unexpected prompt: {prompt[:300]}")


def _responder(request: dict) -> str:
    prompt = _prompt(request)
    kind = _kind(prompt)
    if kind == "comments":
        return json.dumps({"table_comment": "LLM表注释", "columns": {}, "enum_candidates": []}, ensure_ascii=False)
    if kind == "themes":
        return json.dumps({"themes": THEMES}, ensure_ascii=False)
    if kind == "pairs":
        topic = next(name for name in PAIRS if name in prompt)
        return json.dumps({"pairs": PAIRS[topic]}, ensure_ascii=False)
    return json.dumps({"repairs": []})


def test_llm_run_is_shown_and_uses_the_inferred_relationships(pipeline, nofk_url, llm_stub, monkeypatch):
    monkeypatch.setenv("LLM_BASE_URL", llm_stub.base_url)
    monkeypatch.setenv("LLM_API_KEY", "sk-stub-nofk")
    monkeypatch.setenv("LLM_MODEL", "stub-model")
    llm_stub.default = _responder
    task_id, status = pipeline.run(TABLES, timeout=240, db_connection=nofk_url, business_context=BUSINESS_CONTEXT,
                                   db_name="nofk_warehouse", task_name="no-fk llm")
    pairs = _check_run(pipeline, task_id, status, nofk_url)
    assert sorted(p["sql"] for p in pairs) == sorted([REVENUE_SQL, TRAFFIC_SQL])
    assert _along_inferred(pairs) == {("bss_business_day_data", "service_no"), ("bss_car_day_count", "service_area_id")}
    prompts = [_prompt(r) for r in llm_stub.chat_requests]
    themes = [p for p in prompts if _kind(p) == "themes"]
    assert len(themes) == 1
    # The theme prompt names the inferred relationship (it is nowhere in the catalog).
    assert any("service_no" in line and "bss_service_area" in line and "service_area_no" in line
               for line in themes[0].splitlines()), themes[0]
    revenue = next(p for p in prompts if _kind(p) == "pairs" and "服务区营收" in p)
    assert any("service_no" in line and "service_area_no" in line for line in revenue.splitlines()), revenue
