"""End to end: the project's state machine executed by moto, step Lambdas on real PostgreSQL + pgvector,
driven through the HTTP API exactly as a client does (heuristic provider, offline MiniLM)."""
from __future__ import annotations

import csv
import io
import json

import psycopg2
import pytest

from infra.local.demo_db import DEMO_BUSINESS_CONTEXT, DEMO_TABLES

pytestmark = pytest.mark.slow


def _vector_counts(url: str) -> dict[str, int]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("select to_regclass('public.langchain_pg_embedding') is not null")
        if not cur.fetchone()[0]:
            return {}
        cur.execute(
            "select c.name, count(e.id) from langchain_pg_collection c "
            "left join langchain_pg_embedding e on e.collection_id = c.uuid group by c.name"
        )
        return dict(cur.fetchall())


@pytest.fixture(scope="module")
def demo_run(pipeline_stack):
    """One complete run on the demo database with a vector backup, shared by the assertions below."""
    from tests.support.pipeline import PipelineClient

    client = PipelineClient(pipeline_stack)
    task_id, status = client.run(
        DEMO_TABLES,
        task_name="e2e demo",
        business_context=DEMO_BUSINESS_CONTEXT,
        db_name="highway_demo",
        execute={"execution_mode": "complete", "backup_vector_tables": True},
    )
    return client, task_id, status


def test_complete_run_finishes_every_step(demo_run):
    client, task_id, status = demo_run
    assert status["status"] == "completed", status.get("error_message")
    assert status["step_status"] == {
        "ddl_generation": "completed",
        "qa_generation": "completed",
        "sql_validation": "completed",
        "training_load": "completed",
    }
    assert all(step["started_at"] and step["completed_at"] for step in status["steps"])
    assert status["completed_at"] and status["error_message"] is None
    ddl = status["results"]["ddl_generation"]
    assert ddl["tables_succeeded"] == len(DEMO_TABLES) and ddl["tables_failed"] == 0
    assert status["progress"]["ddl_generation"]["done"] == len(DEMO_TABLES)
    assert status["llm_usage"]["qa_generation"]["provider"].startswith("heuristic")


def test_files_are_produced_and_downloadable(demo_run):
    client, task_id, status = demo_run
    files = client.files(task_id)
    for table in DEMO_TABLES:
        name = table.split(".", 1)[1]
        assert f"{name}.ddl" in files and f"{name}_detail.md" in files
        assert client.file_text(task_id, f"{name}.ddl").lstrip().startswith("-- ")
    pair_files = [n for n, f in files.items() if f["is_primary"]]
    assert len(pair_files) == 1 and pair_files[0].startswith("qs_highway_demo_")
    pairs = json.loads(client.file_text(task_id, pair_files[0]))
    assert len(pairs) >= 30
    assert all(p["sql"].endswith(";") and "\n" not in p["sql"] and "\n" not in p["question"] for p in pairs)
    assert any("服务区" in p["question"] for p in pairs)  # Chinese kept unescaped
    assert "metadata.txt" in files and "metadata_detail.md" in files
    assert any(n.startswith("sql_validation_") and n.endswith("_summary.log") for n in files)
    assert not any(n.startswith("work/") or n.startswith("logs/") for n in files)


def test_quality_targets_of_the_heuristic_provider(demo_run, pipeline_stack):
    client, task_id, status = demo_run
    validation = status["results"]["sql_validation"]
    assert validation["total"] >= 30
    assert validation["valid_before"] / validation["total"] >= 0.95
    assert validation["valid_after"] == validation["total"] - validation["dropped"]
    # Every kept pair really is valid: EXPLAIN each one on the business database.
    pair_file = status["results"]["qa_generation"]["pair_file"]
    pairs = json.loads(client.file_text(task_id, pair_file))
    with psycopg2.connect(pipeline_stack.db_url) as conn, conn.cursor() as cur:
        for pair in pairs:
            cur.execute("explain " + pair["sql"])
    counts = _vector_counts(pipeline_stack.pgvector_url)
    assert counts.get("ddl", 0) >= len(DEMO_TABLES)
    assert counts.get("documentation", 0) > 0 and counts.get("sql", 0) >= len(pairs)


def test_logs_cover_the_run(demo_run):
    client, task_id, status = demo_run
    logs = client.logs(task_id)
    loggers = {record["logger"] for record in logs}
    assert {"SchemaWorkflowOrchestrator", "DDLMDGenerator", "QuestionSQLGenerator", "SQLValidator",
            "TrainingDataLoader", "VectorTableManager"} <= loggers
    steps = {record["step"] for record in logs}
    assert {"ddl_generation", "qa_generation", "sql_validation", "training_load"} <= steps
    assert not [r for r in logs if r["level"] == "ERROR"]
    text = client.file_text(task_id, "data_pipeline.log")
    assert "[INFO] DDLMDGenerator: 开始处理表: public.bss_company" in text


def test_vector_backup_files_are_valid_csv(demo_run):
    client, task_id, status = demo_run
    files = client.files(task_id)
    backups = [n for n in files if n.startswith("vector_bak/") and n.endswith(".csv")]
    log = client.file_text(task_id, "vector_bak/vector_backup_log.txt")
    assert "langchain_pg_embedding" in log
    for name in backups:
        rows = list(csv.DictReader(io.StringIO(client.file_text(task_id, name))))
        for row in rows:
            if "cmetadata" in row and row["cmetadata"]:
                json.loads(row["cmetadata"])


def test_loading_again_adds_no_rows(demo_run, pipeline_stack):
    client, task_id, status = demo_run
    before = _vector_counts(pipeline_stack.pgvector_url)
    client.execute(task_id, execution_mode="step", step_name="training_load")
    again = client.wait(task_id)
    assert again["status"] == "completed", again.get("error_message")  # all four steps are completed
    assert _vector_counts(pipeline_stack.pgvector_url) == before
    assert again["results"]["training_load"]["ddl"] == 0 and again["results"]["training_load"]["sql"] == 0


def test_training_load_reads_a_file_changed_after_ddl_generation(demo_run, pipeline_stack):
    """training_load takes ddl_generation's bundled texts only where S3's ETag proves them current."""
    client, task_id, _ = demo_run
    name = DEMO_TABLES[0].split(".", 1)[1] + ".ddl"
    key = f"tasks/{task_id}/{name}"
    s3 = pipeline_stack.client("s3")
    marker = f"人工复核 {task_id}"  # unique: the vector database outlives test runs
    changed = client.file_text(task_id, name) + f"\n-- reviewed by the data team: {marker}\n"
    s3.put_object(Bucket=pipeline_stack.bucket, Key=key, Body=changed.encode("utf-8"))
    client.execute(task_id, execution_mode="step", step_name="training_load")
    again = client.wait(task_id)
    assert again["status"] == "completed", again.get("error_message")
    assert again["results"]["training_load"]["ddl"] == 1  # the changed text is a new document
    with psycopg2.connect(pipeline_stack.pgvector_url) as conn, conn.cursor() as cur:
        cur.execute("select count(*) from langchain_pg_embedding where document like %s", (f"%{marker}%",))
        assert cur.fetchone()[0] == 1
    files = 2 * len(DEMO_TABLES) + 1  # a .ddl and a _detail.md per table, and qa's metadata_detail.md
    messages = [entry["message"] for entry in client.logs(task_id)]
    assert f"{files} files: {files - 1} from the ddl_generation bundle (checked against their ETags), " \
           "1 read from S3" in messages  # the first run: only metadata_detail.md, which ddl_generation did not write
    assert f"{files} files: {files - 2} from the ddl_generation bundle (checked against their ETags), " \
           "2 read from S3" in messages  # now the changed file too


def test_truncate_backs_up_first_then_empties_embeddings(demo_run, pipeline_stack):
    client, task_id, _ = demo_run
    before = _vector_counts(pipeline_stack.pgvector_url)
    assert sum(before.values()) > 0
    task2, status = client.run(
        ["public.bss_company"],
        business_context=DEMO_BUSINESS_CONTEXT,
        execute={"execution_mode": "step", "step_name": "ddl_generation", "truncate_vector_tables": True},
    )
    assert status["status"] == "partial_completed", status.get("error_message")
    assert status["step_status"]["ddl_generation"] == "completed"
    assert status["step_status"]["qa_generation"] == "pending"
    backup = status["results"]["vector_backup"]["counts"]
    assert backup["langchain_pg_embedding"] == sum(before.values())
    assert status["results"]["vector_truncate"]["rows_removed"] == sum(before.values())
    with psycopg2.connect(pipeline_stack.pgvector_url) as conn, conn.cursor() as cur:
        cur.execute("select count(*) from langchain_pg_embedding")
        assert cur.fetchone()[0] == 0
        cur.execute("select count(*) from langchain_pg_collection")
        assert cur.fetchone()[0] == len(before)  # collections are never emptied
    files = client.files(task2)
    emb = [n for n in files if n.startswith("vector_bak/langchain_pg_embedding_")]
    assert len(emb) == 1
    rows = list(csv.DictReader(io.StringIO(client.file_text(task2, emb[0]))))
    assert len(rows) == sum(before.values())


def test_a_failing_step_leaves_the_task_failed_with_the_message_and_it_can_run_again(pipeline):
    task_id = pipeline.create_task(business_context="test", db_name="x")
    pipeline.upload_tables(task_id, ["public.no_such_table"])
    pipeline.execute(task_id)
    status = pipeline.wait(task_id)
    assert status["status"] == "failed"
    assert status["step_status"]["ddl_generation"] == "failed"
    assert "none of the 1 listed tables" in status["error_message"]
    failed = next(s for s in status["steps"] if s["step_name"] == "ddl_generation")
    assert "none of the 1 listed tables" in failed["error_message"]
    errors = pipeline.logs(task_id, level="ERROR")
    assert any("public.no_such_table" in r["message"] for r in errors)
    assert not [n for n in pipeline.files(task_id) if n.endswith(".ddl")]
    # The table list is fixed and the same task executes again, this time to completion of the step.
    body = {"table_names": ["public.bss_company"]}
    pipeline.request("POST", f"/api/v0/data_pipeline/tasks/{task_id}/table-list", body, expect=200)
    pipeline.execute(task_id, execution_mode="step", step_name="ddl_generation")
    status = pipeline.wait(task_id)
    assert status["status"] == "partial_completed", status.get("error_message")
    assert "bss_company.ddl" in pipeline.files(task_id)
