"""The whole job in the web console, in headless Chromium against the real local stack over HTTP: paste the key,
create a task, watch it complete, read its logs, preview a DDL, break one pair's SQL (the save is refused with
PostgreSQL's error), fix it, save, load, see the vector counts change, restore the backup after a confirmation.
One complete run per module; a screenshot of each page goes to out/screenshots/."""
from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import API_KEY, shoot

pytestmark = pytest.mark.slow

TABLES = ["public.bss_company", "public.bss_service_area"]
RUN_TIMEOUT_MS = 240_000
BAD_SQL = "SELECT no_such_column FROM public.bss_company"
FIXED_SQL = "SELECT count(*) FROM public.bss_company WHERE delete_ts IS NULL"
NEW_QUESTION = "一共有多少家服务区管理公司？"
NEW_SQL = "SELECT count(DISTINCT company_name) FROM public.bss_company"


def _console_url(api) -> str:
    return api.base_url.removesuffix("/api/v0") + "/console"


def _rows(tab, collection: str) -> int:
    cell = tab.get_by_test_id(f"rows-{collection}")
    expect(cell).to_be_visible()
    return int(cell.inner_text())


def _wait_step(tab, step: str, state: str = "completed") -> None:
    expect(tab.locator(f'tr[data-step="{step}"]')).to_have_attribute("data-state", state, timeout=RUN_TIMEOUT_MS)


def test_the_whole_job_in_the_console(keyed_api, tab):
    api = keyed_api
    tab.goto(_console_url(api))
    expect(tab).to_have_title("data_pipeline 控制台")
    # No key yet: the API refuses, and the console says so.
    expect(tab.get_by_test_id("task-list").get_by_test_id("error")).to_contain_text("UNAUTHORIZED")
    tab.locator("#api-key").fill(API_KEY)
    tab.locator("#api-key").press("Enter")
    tab.locator("#api-key").blur()
    expect(tab.get_by_test_id("page-info")).to_be_visible()
    assert tab.evaluate("sessionStorage.length") == 1  # the key, and nothing else
    assert tab.evaluate("localStorage.length") == 0

    # Tasks: create one (connection test, table picker, business context, a preset).
    tab.get_by_test_id("new-task").click()
    tab.get_by_test_id("test-conn").click()
    expect(tab.get_by_test_id("conn-result")).to_contain_text("连接成功")
    tab.get_by_placeholder("bss_*").fill("bss_*")
    tab.get_by_test_id("load-tables").click()
    for name in TABLES:
        tab.get_by_test_id("table-picker").locator(f'input[value="{name}"]').check()
    expect(tab.get_by_test_id("picked-count")).to_contain_text("2")
    tab.get_by_test_id("create-name").fill("控制台测试")
    tab.get_by_test_id("create-context").fill("高速公路服务区管理系统")
    tab.locator('[data-preset="debug"]').click()
    assert not tab.locator('[data-flag="enable_training_data_load"]').is_checked()
    tab.locator('[data-preset="recommended"]').click()
    assert tab.locator('[data-flag="enable_training_data_load"]').is_checked()
    assert not tab.locator('[data-flag="truncate_vector_tables"]').is_checked()
    shoot(tab, "01-tasks-create")
    tab.get_by_test_id("create-task").click()

    # Run: the task page; execute everything and watch every step complete, per table.
    expect(tab.locator("main")).to_have_attribute("data-page", "run")
    task_id = tab.evaluate("decodeURIComponent(location.hash.split('/')[2])")
    assert api.status(task_id)["table_count"] == 2
    # The page's first read of the task fills its head, which moves the buttons down: click after it (a click
    # during that shift landed beside the button once, and nothing ran), and see that the run started.
    expect(tab.locator("main")).to_contain_text(task_id)
    expect(tab.locator('tr[data-step="ddl_generation"]')).to_have_attribute("data-state", "pending")
    tab.get_by_test_id("run-complete").click()
    expect(tab.locator("#notice")).to_contain_text("已开始执行")
    for step in ("ddl_generation", "qa_generation", "sql_validation", "training_load"):
        _wait_step(tab, step)
    progress = tab.get_by_test_id("progress")
    for name in TABLES:
        expect(progress.locator(f'tr[data-item="{name}"] .badge')).to_have_attribute("data-status", "completed")
    expect(tab.locator('tr[data-step="ddl_generation"] td').nth(5)).not_to_have_text("")  # LLM calls shown
    expect(tab.get_by_test_id("polling")).to_have_text("未在运行")
    shoot(tab, "02-run")

    # Logs: filtered by step.
    tab.locator('nav a[data-page="logs"]').click()
    tab.get_by_test_id("log-step").select_option("ddl_generation")
    with tab.expect_response(lambda r: r.url.endswith("/logs/query") and "ddl_generation" in (r.request.post_data
                                                                                           or "")):
        tab.get_by_test_id("log-search").click()
    rows = tab.get_by_test_id("log-list").locator("tbody tr")
    expect(rows.first).to_be_visible()
    assert set(rows.locator("td:nth-child(3)").all_inner_texts()) == {"ddl_generation"}
    shoot(tab, "03-logs")

    # Files: the DDL preview, highlighted; the MD rendered; a download equals the file the API serves.
    tab.locator('nav a[data-page="files"]').click()
    expect(tab.get_by_test_id("validation-summary")).to_contain_text("100")
    tab.locator('tr[data-file="bss_company.ddl"] [data-action="preview"]').click()
    ddl = tab.get_by_test_id("preview").locator('pre[data-kind="sql"]')
    expect(ddl).to_contain_text("create table public.bss_company")
    assert ddl.locator("span.kw").count() > 5 and ddl.locator("span.cm").count() > 3
    shoot(tab, "04-files-ddl")
    with tab.expect_download() as download:
        tab.locator('tr[data-file="bss_company.ddl"] [data-action="download"]').click()
    served = api.call("GET", f"/data_pipeline/tasks/{task_id}/files/bss_company.ddl", expect=200).raw
    assert open(download.value.path(), "rb").read() == served
    tab.locator('tr[data-file="bss_company_detail.md"] [data-action="preview"]').click()
    expect(tab.get_by_test_id("preview").locator(".md h2")).to_contain_text("bss_company")

    # Vectors before the review: what the run loaded.
    tab.locator('nav a[data-page="vectors"]').click()
    before = {name: _rows(tab, name) for name in ("ddl", "documentation", "sql")}
    assert before["sql"] > 0 and before["ddl"] == 2

    # Review: break one SQL (checked on the server; the save is refused with PostgreSQL's error), fix it, add a
    # pair, save a new version, edit a column comment, load (backing up the vectors first).
    tab.goto(f"{_console_url(api)}#/review/{task_id}")
    first = tab.locator('tr[data-index="0"]')
    sql = first.get_by_test_id("sql-input")
    sql.fill(BAD_SQL)
    sql.blur()
    expect(first.get_by_test_id("sql-error")).to_contain_text('column "no_such_column" does not exist')
    tab.get_by_test_id("save-pairs").click()
    expect(tab.get_by_test_id("save-error")).to_contain_text('column "no_such_column" does not exist')
    expect(tab.get_by_test_id("save-result")).to_contain_text("SQL_VALIDATION_FAILED")
    assert [v["version"] for v in api.data("GET", f"/data_pipeline/tasks/{task_id}/pairs")["versions"]] == [1]
    shoot(tab, "05-review-refused")
    sql.fill(FIXED_SQL)
    sql.blur()
    expect(first.get_by_test_id("row-check")).to_contain_text("SQL 有效")
    tab.get_by_test_id("add-pair").click()
    added = tab.locator("tr.added").last
    added.locator("textarea").first.fill(NEW_QUESTION)
    added.get_by_test_id("sql-input").fill(NEW_SQL)
    tab.get_by_test_id("author").fill("审核员")
    tab.get_by_test_id("save-pairs").click()
    expect(tab.get_by_test_id("saved")).to_contain_text("版本 2")
    saved = api.data("GET", f"/data_pipeline/tasks/{task_id}/pairs")
    assert saved["version"] == 2 and saved["pairs"][0]["sql"] == FIXED_SQL
    assert {"question": NEW_QUESTION, "sql": NEW_SQL} in saved["pairs"]
    shoot(tab, "06-review-saved")

    tab.get_by_test_id("comment-table").select_option("bss_company.ddl")
    company = tab.locator('input[data-column="company_name"]')
    expect(company).to_have_value("公司名称")
    company.fill("服务区管理公司名称")
    tab.get_by_test_id("save-comments").click()
    expect(tab.get_by_test_id("comments-saved")).to_contain_text("bss_company.ddl")
    ddl_text = api.call("GET", f"/data_pipeline/tasks/{task_id}/files/bss_company.ddl", expect=200).raw.decode()
    assert "服务区管理公司名称" in ddl_text

    assert tab.get_by_test_id("load-backup").is_checked()
    tab.get_by_test_id("load-pairs").click()
    expect(tab.locator("main")).to_have_attribute("data-page", "run")
    _wait_step(tab, "training_load")
    expect(tab.get_by_test_id("polling")).to_have_text("未在运行", timeout=RUN_TIMEOUT_MS)

    # Vectors: the load changed the counts; restoring the backup taken before it (after a confirmation, the
    # tables emptied first) brings them back.
    tab.locator('nav a[data-page="vectors"]').click()
    expect(tab.get_by_test_id("rows-sql")).not_to_have_text(str(before["sql"]))
    after = {name: _rows(tab, name) for name in ("ddl", "documentation", "sql")}
    assert after["sql"] > before["sql"]
    backup = tab.locator(f'tr[data-backup^="{task_id}/"]')
    expect(backup).to_have_count(1)
    backup.locator('[data-action="restore"]').click()
    dialog = tab.get_by_test_id("restore-dialog")
    expect(dialog).to_contain_text(task_id)
    shoot(tab, "07-vectors-restore-confirm")
    dialog.locator("button", has_text="取消").click()
    expect(dialog).to_have_count(0)
    assert _rows(tab, "sql") == after["sql"]  # cancelled: nothing restored
    backup.locator('[data-action="restore"]').click()
    assert tab.get_by_test_id("restore-truncate").is_checked()
    tab.get_by_test_id("confirm-restore").click()
    expect(tab.locator("#notice")).to_contain_text("已恢复")
    expect(tab.get_by_test_id("rows-sql")).to_have_text(str(before["sql"]))
    assert {name: _rows(tab, name) for name in before} == before
    shoot(tab, "08-vectors")

    # English by the toggle; every string of every page visited exists in both dictionaries.
    tab.locator("#lang-toggle").click()
    expect(tab.locator('nav a[data-page="tasks"]')).to_have_text("Tasks")
    tab.locator('nav a[data-page="tasks"]').click()
    expect(tab.locator(f'tr[data-task="{task_id}"]')).to_contain_text("completed")
    shoot(tab, "09-tasks-en")
    assert tab.evaluate("[...window.consoleMissingStrings]") == []
    assert tab.page_errors == []
    stats = api.data("GET", "/data_pipeline/vector/stats")
    assert {c["name"]: c["rows"] for c in stats["collections"]} == before, json.dumps(stats, ensure_ascii=False)


def test_file_previews_cannot_carry_markup(keyed_api, tab):
    """Markdown is escaped before it is rendered; highlighted SQL is text in spans: a file cannot inject HTML."""
    tab.goto(_console_url(keyed_api))
    rendered = tab.evaluate("""async () => {
        const md = await import("./console/highlight.js");
        const html = md.renderMarkdown("# 标题 <img src=x onerror=alert(1)>\\n- **粗体** <script>x()</script>\\n"
            + "| a | <b>c</b> |\\n|---|---|\\n| `<i>` | d |");
        const pre = document.createElement("pre");
        pre.append(md.highlightSql("select '<b>x</b>' -- <script>\\nfrom t"));
        return {html, sql: pre.innerHTML, text: pre.textContent};
    }""")
    html = rendered["html"]
    assert "<img" not in html and "<script" not in html and "<b>" not in html and "<i>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "&lt;script&gt;" in html
    assert "<h1>" in html and "<strong>粗体</strong>" in html and "<th>a</th>" in html
    assert "<code>&lt;i&gt;</code>" in html
    sql = rendered["sql"]
    assert "<b>" not in sql and "&lt;b&gt;" in sql and '<span class="kw">select</span>' in sql
    assert rendered["text"] == "select '<b>x</b>' -- <script>\nfrom t"


def test_both_dictionaries_have_every_string(keyed_api, tab):
    tab.goto(_console_url(keyed_api))
    keys = tab.evaluate("""async () => {
        const {DICTIONARIES} = await import("./console/i18n.js");
        return {zh: Object.keys(DICTIONARIES.zh), en: Object.keys(DICTIONARIES.en)};
    }""")
    assert len(keys["zh"]) > 150
    assert sorted(set(keys["zh"]) ^ set(keys["en"])) == []
