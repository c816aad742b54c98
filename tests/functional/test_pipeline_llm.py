"""The LLM path through the real state machine (moto executing infra/data_pipeline.asl.json, step Lambdas
in-process, real PostgreSQL): an OpenAI-compatible stub answers by reading each prompt, so the order in which
the Map iterations ask does not matter. Covers good answers, invented/missing columns, SQL repair, 429/500/timeout,
malformed answers, apologies and write statements."""
from __future__ import annotations

import json
import re

import psycopg2
import pytest

from infra.local.demo_db import DEMO_BUSINESS_CONTEXT
from tests.support.llm_stub import StubAnswer

pytestmark = pytest.mark.slow

API_KEY = "sk-stub-key-G-0123456789"
DB_PASSWORD = "Pw-G-S3cret-77"
TABLES = ["public.bss_company", "public.bss_service_area", "public.bss_car_day_count"]

# -- what the stub answers -----------------------------------------------------------------------------------

COMMENTS = {
    # LLM proposals: DB comments exist for most of these and must win; `version` is never commented (no DB
    # comment either), `ghost_column` does not exist.
    "public.bss_company": {"id": "LLM公司编号", "company_name": "LLM公司名", "company_no": "LLM公司编码",
                           "create_ts": "LLM创建", "ghost_column": "幽灵字段说明"},
    "public.bss_service_area": {"id": "LLM服务区编号", "service_area_name": "LLM服务区名",
                                "service_position": "LLM服务区经纬度位置", "service_state": "LLM状态",
                                "ghost_column": "幽灵字段说明"},
    "public.bss_car_day_count": {"customer_count": "LLM车辆数", "car_type": "LLM车型", "count_date": "LLM日期",
                                 "ghost_column": "幽灵字段说明"},
}
ENUM_CANDIDATES = {"public.bss_service_area": ["service_state", "ghost_enum"], "public.bss_car_day_count": ["car_type"]}

THEMES = [
    {"topic_name": "公司与服务区", "description": "管理公司旗下的服务区分布",
     "related_tables": ["public.bss_company", "public.bss_service_area"],
     "biz_entities": ["公司", "服务区"], "biz_metrics": ["服务区数量"]},
    {"topic_name": "车流分析", "description": "服务区每日车流量",
     "related_tables": ["bss_car_day_count", "public.bss_service_area"],
     "biz_entities": ["车辆"], "biz_metrics": ["车流量"]},
]

VALID_1 = ("SELECT c.company_name, count(*) AS areas FROM public.bss_company c JOIN public.bss_service_area s "
           "ON s.company_id = c.id WHERE s.delete_ts IS NULL GROUP BY c.company_name ORDER BY areas DESC;")
# Wrong in ways only PostgreSQL sees (every name is real, so the catalog check at generation passes them).
REPAIRABLE = "SELECT count(*) FROM public.bss_service_area WHERE service_state = 1 AND delete_ts IS NULL;"
REPAIRED = "SELECT count(*) FROM public.bss_service_area WHERE service_state = '开放' AND delete_ts IS NULL;"
UNREPAIRABLE = "SELECT sum(company_name) FROM public.bss_company WHERE delete_ts IS NULL;"
STILL_BROKEN = "SELECT sum(revenue_amount) FROM public.bss_company WHERE delete_ts IS NULL;"
VALID_2 = ("SELECT count_date, sum(customer_count) AS cars FROM public.bss_car_day_count WHERE delete_ts IS NULL "
           "GROUP BY count_date ORDER BY count_date;")
VALID_3 = ("SELECT car_type, sum(customer_count) AS cars FROM public.bss_car_day_count WHERE delete_ts IS NULL "
           "GROUP BY car_type ORDER BY cars DESC LIMIT 5;")

PAIRS = {
    "公司与服务区": [
        {"question": "各管理公司分别有多少个服务区？", "sql": VALID_1},
        {"question": "目前开放的服务区有多少个？", "sql": REPAIRABLE},
        {"question": "各公司的营收总额是多少？", "sql": UNREPAIRABLE},
    ],
    "车流分析": [
        {"question": "每天的车流总量是多少？", "sql": VALID_2},
        {"question": "车流量最多的 5 种车型是哪些？", "sql": VALID_3},
    ],
}


def _prompt(request: dict) -> str:
    return "\n".join(str(m.get("content", "")) for m in request.get("messages", []) if m.get("role") == "user")


def _repair_items(prompt: str) -> list[dict]:
    match = re.search(r"\n(\[.*\])\n\n输出格式", prompt, re.S)
    assert match, prompt[-500:]
    return json.loads(match.group(1))


def kind_of(request: dict) -> str:
    prompt = _prompt(request)
    if "EXPLAIN 时报错" in prompt:
        return "repair"
    if "业务主题" in prompt:
        return "themes"
    if "请生成" in prompt and "主题：" in prompt:
        return "pairs"
    if "现有表注释" in prompt:
        return "comments"
    raise AssertionError(f"unexpected prompt: {prompt[:300]}")


def good_responder(request: dict) -> str:
    """A well-behaved model: comments per table, two themes, pairs per theme, repairs for what it can fix."""
    prompt = _prompt(request)
    kind = kind_of(request)
    if kind == "comments":
        table = re.search(r"表：(\S+)\n", prompt).group(1)
        return json.dumps({"table_comment": "LLM表注释", "columns": COMMENTS.get(table, {}),
                           "enum_candidates": ENUM_CANDIDATES.get(table, [])}, ensure_ascii=False)
    if kind == "themes":
        return "```json\n" + json.dumps({"themes": THEMES}, ensure_ascii=False) + "\n```"
    if kind == "pairs":
        topic = re.search(r"主题：(.+)\n", prompt).group(1).strip()
        return "<think>先看表结构</think>" + json.dumps({"pairs": PAIRS[topic]}, ensure_ascii=False)
    repairs = []
    for item in _repair_items(prompt):
        if "service_state = 1" in item["sql"]:
            repairs.append({"index": item["index"], "sql": REPAIRED})
        elif "sum(company_name)" in item["sql"]:
            repairs.append({"index": item["index"], "sql": STILL_BROKEN})
        # revenue_amount (round 2): the model gives up and leaves it out
    return json.dumps({"repairs": repairs}, ensure_ascii=False)


# -- helpers ---------------------------------------------------------------------------------------------------


def _use_llm(monkeypatch, stub, *, timeout: float = 10, retries: int = 2) -> None:
    monkeypatch.setenv("LLM_BASE_URL", stub.base_url)
    monkeypatch.setenv("LLM_API_KEY", API_KEY)
    monkeypatch.setenv("LLM_MODEL", "stub-model")
    monkeypatch.setenv("LLM_TIMEOUT_SECONDS", str(timeout))
    monkeypatch.setenv("LLM_MAX_RETRIES", str(retries))


def _db_with_password(url: str) -> str:
    """The demo database URL with a password in it (pgserver trusts local logins, so it is ignored)."""
    return re.sub(r"^postgresql://([^:/@]+):[^@]*@", rf"postgresql://\1:{DB_PASSWORD}@", url)


def _new_task(pipeline, pipeline_stack, tables: list[str], **fields) -> str:
    task_id = pipeline.create_task(business_context=DEMO_BUSINESS_CONTEXT,
                                   db_connection=_db_with_password(pipeline_stack.db_url), **fields)
    pipeline.upload_tables(task_id, tables)
    return task_id


def _run(pipeline, task_id: str, **execute) -> dict:
    pipeline.execute(task_id, **execute)
    return pipeline.wait(task_id, timeout=120)


def _pair_file(pipeline, task_id: str) -> tuple[str, list[dict]]:
    primary = [n for n, f in pipeline.files(task_id).items() if f["is_primary"]]
    assert len(primary) == 1, primary
    return primary[0], json.loads(pipeline.file_text(task_id, primary[0]))


def _stored_usage(task_id: str) -> dict:
    from chalicelib.stores.task_items import from_dynamo
    from chalicelib.stores.tasks import TaskStore

    return from_dynamo(TaskStore().get_task(task_id)["llm_usage"])


def test_api_view_shows_llm_token_counts():
    from chalicelib.api.task_view import public_task_view

    usage = {"provider": "openai-compatible:m", "calls": 2, "prompt_tokens": 120, "completion_tokens": 30,
             "seconds": 0.5, "retries": 0}
    public = public_task_view({"task_id": "task_20250101_000000", "llm_usage": {"qa_generation": usage}})
    assert public["llm_usage"]["qa_generation"] == usage


def _ddl_line(ddl: str, column: str) -> str:
    return next(line for line in ddl.splitlines() if line.strip().startswith(f"{column} "))


# -- 1. the good path ------------------------------------------------------------------------------------------


def test_complete_run_with_an_llm(pipeline, pipeline_stack, llm_stub, monkeypatch):
    _use_llm(monkeypatch, llm_stub)
    llm_stub.default = good_responder
    task_id = _new_task(pipeline, pipeline_stack, TABLES, task_name="llm good path")
    status = _run(pipeline, task_id)

    assert status["status"] == "completed", status.get("error_message")
    assert set(status["step_status"].values()) == {"completed"}
    assert status["results"]["ddl_generation"]["tables_succeeded"] == 3

    # Comments: DB comments win, LLM fills only what the DB lacks, invented columns never show, `version`
    # (no DB comment, not answered) stays without a guessed comment.
    company = pipeline.file_text(task_id, "bss_company.ddl")
    area = pipeline.file_text(task_id, "bss_service_area.ddl")
    area_md = pipeline.file_text(task_id, "bss_service_area_detail.md")
    cars_md = pipeline.file_text(task_id, "bss_car_day_count_detail.md")
    for text in (company, area, area_md, cars_md, pipeline.file_text(task_id, "bss_company_detail.md")):
        assert "ghost_column" not in text and "幽灵字段" not in text and "ghost_enum" not in text
        assert "LLM表注释" not in text  # every table has a DB comment
    assert company.startswith("-- 中文名: 服务区管理公司信息\n")
    assert "公司ID" in _ddl_line(company, "id") and "LLM公司编号" not in company
    assert "LLM创建" not in company and "创建时间" in _ddl_line(company, "create_ts")
    assert "--" not in _ddl_line(company, "version")
    assert "LLM服务区经纬度位置" in _ddl_line(area, "service_position")  # no DB comment: the LLM's is used
    assert "服务区状态" in _ddl_line(area, "service_state") and "LLM状态" not in area
    assert "- service_position (varchar(255)) - LLM服务区经纬度位置" in area_md
    assert re.search(r"^- version \(integer\) \[非空\]", area_md, re.M)
    assert "service_state 为枚举字段" in area_md  # the guessed enum confirmed against the data
    assert "car_type 为枚举字段" in cars_md
    # The rendered DDL is executable as written.
    conn = psycopg2.connect(pipeline_stack.pgvector_url)
    try:
        with conn.cursor() as cur:
            cur.execute(company)
    finally:
        conn.rollback()
        conn.close()

    # Pairs: the repairable one is repaired in place, the unrepairable one dropped; the original kept.
    qa = status["results"]["qa_generation"]
    assert qa["themes"] == 2 and qa["pairs"] == 5 and not qa["themes_failed"]
    name, pairs = _pair_file(pipeline, task_id)
    assert name == qa["pair_file"] and name.startswith("qs_highway_e2e_")
    assert [p["sql"] for p in pairs] == [VALID_1, REPAIRED, VALID_2, VALID_3]
    assert not any("revenue" in p["sql"] for p in pairs)
    backup = json.loads(pipeline.file_text(task_id, f"{name}.backup"))
    assert len(backup) == 5 and {REPAIRABLE, UNREPAIRABLE} <= {p["sql"] for p in backup}
    files = pipeline.files(task_id)
    mods = [n for n in files if n.startswith("file_modifications_")]
    summaries = [n for n in files if n.startswith("sql_validation_") and n.endswith("_summary.log")]
    assert len(mods) == 1 and len(summaries) == 1
    mod_log = pipeline.file_text(task_id, mods[0])
    assert "Changes: 2 (repaired 1, dropped 1)" in mod_log
    assert f"old SQL: {REPAIRABLE}" in mod_log and f"new SQL: {REPAIRED}" in mod_log
    assert "DROPPED:" in mod_log and "revenue_amount" in mod_log
    summary = pipeline.file_text(task_id, summaries[0])
    assert "Total statements: 5" in summary and "Valid before repair: 3 (60.00%)" in summary
    assert "Repaired: 1" in summary and "Dropped (unrepairable): 1" in summary
    assert "operator does not exist: character varying = integer" in summary
    validation = status["results"]["sql_validation"]
    assert [validation[k] for k in ("total", "repaired", "dropped", "pairs_kept")] == [5, 1, 1, 4]
    assert status["results"]["training_load"]["total_rows"]["sql"] >= 4

    # Usage per step, counted from the stub's answers.
    usage = _stored_usage(task_id)
    for step, calls in (("ddl_generation", 3), ("qa_generation", 3), ("sql_validation", 2)):
        assert status["llm_usage"][step]["calls"] == calls, (step, status["llm_usage"][step])
        assert status["llm_usage"][step]["prompt_tokens"] == usage[step]["prompt_tokens"]
        assert usage[step]["provider"] == "openai-compatible:stub-model", step
        assert usage[step]["calls"] == calls, (step, usage[step])
        assert usage[step]["prompt_tokens"] > 0 and usage[step]["completion_tokens"] > 0, usage
        assert usage[step]["retries"] == 0
    assert len(llm_stub.chat_requests) == 8

    # What the model was sent: the business context, never a secret.
    kinds = [kind_of(r) for r in llm_stub.chat_requests]
    assert sorted(kinds) == ["comments"] * 3 + ["pairs"] * 2 + ["repair"] * 2 + ["themes"]
    for request in llm_stub.chat_requests:
        prompt = _prompt(request)
        assert DB_PASSWORD not in prompt and API_KEY not in prompt
        if kind_of(request) != "repair":
            assert DEMO_BUSINESS_CONTEXT in prompt
    assert all(r["headers"].get("authorization") == f"Bearer {API_KEY}" for r in llm_stub.requests)
    logs = pipeline.logs(task_id)
    assert not [r for r in logs if r["level"] == "ERROR"]
    everything = json.dumps(logs, ensure_ascii=False) + json.dumps(pipeline.status(task_id), ensure_ascii=False)
    assert DB_PASSWORD not in everything and API_KEY not in everything
    assert any("do not exist" in r["message"] and r["logger"] == "DDLMDGenerator" for r in logs)


# -- 2. throttled, then fine ------------------------------------------------------------------------------------


def test_rate_limited_answer_is_retried_and_the_run_completes(pipeline, pipeline_stack, llm_stub, monkeypatch):
    _use_llm(monkeypatch, llm_stub)
    llm_stub.default = good_responder
    llm_stub.script(StubAnswer(status=429, headers={"Retry-After": "0"}))
    # Both tables of the theme whose pairs join them (pairs naming a table outside the task are re-asked, dropped).
    task_id = _new_task(pipeline, pipeline_stack, ["public.bss_company", "public.bss_service_area"])
    status = _run(pipeline, task_id)
    assert status["status"] == "completed", status.get("error_message")
    usage = status["llm_usage"]["ddl_generation"]
    assert usage["retries"] == 1 and usage["calls"] == 3  # the 429, then the two answers
    assert "LLM公司编号" not in pipeline.file_text(task_id, "bss_company.ddl")
    assert llm_stub.pending == 0


# -- 3. a hanging model ------------------------------------------------------------------------------------------


def test_llm_timeout_fails_the_step_and_the_task_runs_again(pipeline, pipeline_stack, llm_stub, monkeypatch):
    _use_llm(monkeypatch, llm_stub, timeout=1, retries=0)
    llm_stub.default = lambda request: StubAnswer(delay=3, content=good_responder(request))
    task_id = _new_task(pipeline, pipeline_stack, ["public.bss_company"])
    status = _run(pipeline, task_id, execution_mode="step", step_name="ddl_generation")
    assert status["status"] == "failed"
    assert status["step_status"]["ddl_generation"] == "failed"
    assert status["error_message"].startswith("STEP_FAILED:")
    assert "did not answer within 1 s" in status["error_message"]
    failed = next(s for s in status["steps"] if s["step_name"] == "ddl_generation")
    assert "did not answer within 1 s" in failed["error_message"]
    assert not [n for n in pipeline.files(task_id) if n.endswith(".ddl")]
    errors = pipeline.logs(task_id, level="ERROR")
    assert any("public.bss_company" in r["message"] and "did not answer" in r["message"] for r in errors)

    llm_stub.default = good_responder  # the model is back
    status = _run(pipeline, task_id, execution_mode="step", step_name="ddl_generation")
    assert status["status"] == "partial_completed", status.get("error_message")
    assert status["step_status"]["ddl_generation"] == "completed" and status["error_message"] is None
    assert "公司ID" in pipeline.file_text(task_id, "bss_company.ddl")
