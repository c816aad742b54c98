"""sql_validation's plan gives each batch only the docs its pairs can need (the tables their SQL names, as the
catalog check resolves them, and the tables those reference), streamed once from ddl_generation's batch files; a
batch validated with its doc file judges its pairs as the whole schema would (real PostgreSQL, moto S3)."""
from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import boto3
import psycopg2
import pytest
from moto import mock_aws

from chalicelib.pipeline.introspect import introspect_tables
from chalicelib.pipeline.models import ForeignKey, QAPair, TableDoc, TableRef
from chalicelib.pipeline.validation import validate_pairs
from chalicelib.providers.heuristic import HeuristicProvider
from chalicelib.steps import sql_validation
from chalicelib.steps.ddl_generation import TABLE_DOCS
from chalicelib.stores.files import FileStore, TaskFiles
from tests.conftest import run_sql

SCHEMA = """
create schema sales;
create table regions (id integer primary key, name text);
create table customers (id integer primary key, region_id integer, name text);
create table orders (id integer primary key, customer_id integer references customers (id), order_date date);
create table items (id integer primary key, order_id integer references orders (id), qty integer);
create table sales.products (id integer primary key, name text);
create table sales.orders (id integer primary key, product_id integer references sales.products (id),
                           amount numeric(10, 2));
create table "Mixed" (id integer primary key, "Label" text);
create table mixed (id integer primary key, note text);
create table lonely (id integer primary key, seen date);
create table outside (id integer primary key);
insert into regions values (1, 'north');
insert into customers values (1, 1, 'c1');
insert into orders values (1, 1, date '2024-01-02');
"""
DOCUMENTED = [TableRef("public", n) for n in ("regions", "customers", "orders", "items", "Mixed", "mixed", "lonely")]
DOCUMENTED += [TableRef("sales", "products"), TableRef("sales", "orders")]  # public.outside is not documented

BATCHES = [
    # a join over bare names: orders is in two schemas (both may be meant), customers' inferred key reaches regions
    [QAPair("订单客户", "SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id;")],
    # a CTE (its name is no table) over a quoted mixed-case name: "Mixed" exactly, never mixed
    [QAPair("标签", 'WITH m AS (SELECT id, "Label" FROM "Mixed") SELECT count(*) FROM m;')],
    # schema-qualified exactly, and a bare name found in one schema only
    [QAPair("产品", "SELECT count(*) FROM sales.products;"), QAPair("产品名", "SELECT name FROM products;")],
    # a table in the database that no doc has; a typo that brings the closest known name for its repair
    [QAPair("外部", "SELECT count(*) FROM outside;"), QAPair("拼错", "SELECT seen FROM lonley;")],
]
EXPECTED = [
    ["public.customers", "public.orders", "public.regions", "sales.orders", "sales.products"],
    ['public."Mixed"'],
    ["sales.products"],
    ["public.lonely"],
]


class Log:
    def __init__(self):
        self.records: list[tuple[str, str, dict]] = []

    def info(self, message, **keys):
        self.records.append(("INFO", message, keys))

    def warning(self, message, **keys):
        self.records.append(("WARNING", message, keys))


@pytest.fixture
def documented(scratch_db, monkeypatch):
    """The task's docs as ddl_generation leaves them: batch files of three docs each, in moto S3."""
    run_sql(scratch_db, SCHEMA)
    conn = psycopg2.connect(scratch_db)
    try:
        found, problems = introspect_tables(conn, DOCUMENTED, exact_count_threshold=10_000)
    finally:
        conn.close()
    assert not problems
    inferred = ForeignKey("inferred_region", ["region_id"], "public", "regions", ["id"], inferred=True,
                          evidence="region_id matches regions.id")
    docs = []
    for ref in DOCUMENTED:
        meta = found[ref]
        if ref.name == "customers":
            meta = dataclasses.replace(meta, inferred_keys=[inferred])
        docs.append(TableDoc(meta=meta, table_comment=None, column_comments={}, comment_sources={}, enums={},
                             samples=[]))
    for key, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="task-bucket")
        run = SimpleNamespace(files=TaskFiles("task_docs", FileStore(bucket="task-bucket")), log=Log())
        for start in range(0, len(docs), 3):
            group = docs[start:start + 3]
            run.files.put_text(f"{TABLE_DOCS}{group[0].meta.ref.file_stem}.json",
                               json.dumps({"docs": [d.to_dict() for d in group], "files": {}}, ensure_ascii=False))
        yield scratch_db, run, docs


def _names(run, index: int) -> list[str]:
    return sorted(TableRef.from_dict(d["meta"]["ref"]).display_name
                  for d in json.loads(run.files.get_text(sql_validation.docs_file(index))))


def test_each_batch_doc_file_holds_exactly_the_named_tables_and_their_references(documented):
    _url, run, _docs = documented
    assert sql_validation.write_batch_docs(run, BATCHES) is True
    assert [_names(run, i) for i in range(len(BATCHES))] == EXPECTED
    stored = json.loads(run.files.get_text(sql_validation.docs_file(0)))
    customers = next(d for d in stored if d["meta"]["ref"]["name"] == "customers")
    assert customers["meta"]["inferred_keys"][0]["ref_table"] == "regions"  # full docs, not compact ones


def test_a_task_without_docs_writes_no_doc_file(documented):
    _url, run, _docs = documented
    run.files.delete_many(run.files.iter_names(TABLE_DOCS))
    assert sql_validation.write_batch_docs(run, BATCHES) is False
    assert not list(run.files.iter_names(sql_validation.WORK))


def test_batches_judged_on_their_docs_as_on_the_whole_schema(documented):
    url, run, docs = documented
    sql_validation.write_batch_docs(run, BATCHES)
    for index, pairs in enumerate(BATCHES):
        mine = [TableDoc.from_dict(d) for d in json.loads(run.files.get_text(sql_validation.docs_file(index)))]
        options = {"llm": HeuristicProvider(), "enable_repair": True, "max_rounds": 2, "timeout_ms": 5000}
        batch = validate_pairs(url, pairs, docs=mine, complete_catalog=True, **options)
        whole = validate_pairs(url, pairs, docs=docs, **options)
        assert [(r.valid_before, r.valid_after, r.repaired, r.final_sql, r.error) for r in batch.results] == \
            [(r.valid_before, r.valid_after, r.repaired, r.final_sql, r.error) for r in whole.results]
    # The last batch: a table outside the docs is unknown although EXPLAIN accepts it; the typo is repaired.
    outside, typo = batch.results
    assert outside.error == "names objects the catalog does not have: unknown table outside" and outside.dropped
    assert typo.repaired and typo.final_sql == "SELECT seen FROM lonely;"


def test_a_batch_whose_pairs_name_no_documented_table_is_still_checked(documented):
    url, run, _docs = documented
    pairs = [QAPair("外部", "SELECT count(*) FROM outside;")]
    sql_validation.write_batch_docs(run, [pairs])
    assert _names(run, 0) == []
    report = validate_pairs(url, pairs, llm=None, docs=[], complete_catalog=True, enable_repair=False, max_rounds=0,
                            timeout_ms=5000)
    assert report.results[0].error == "names objects the catalog does not have: unknown table outside"
