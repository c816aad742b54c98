"""The product's vector tables shared with the clients users already have, all real packages on real pgvector:
langchain_postgres' PGVector and Vanna 0.7.x (the `id varchar` layout), langchain_community's legacy PGVector
(the `uuid` / `custom_id` layout). Embeddings: the product's offline MiniLM (384-d) behind a LangChain adapter."""
from __future__ import annotations

import json
import uuid

import psycopg2
import pytest
from psycopg2 import sql as pgsql

from chalicelib import errors
from chalicelib.pipeline import training, vector_layout, vector_restore, vectors
from chalicelib.pipeline.db import database_name
from chalicelib.pipeline.models import QAPair
from tests.conftest import create_database, drop_database
from tests.support import vector_clients as vc
from tests.support.backup_files import MemoryFiles

DDL = [
    "create table public.orders (\n  id int primary key, -- 订单编号\n  amount numeric(10,2) -- 订单金额\n);\n",
    "create table public.stations (\n  id int primary key, -- 收费站编号\n  name varchar(64) -- 收费站名称\n);\n",
]
DOCS = ["## orders（订单表）\n每笔订单的金额", "## stations（收费站）\n高速公路收费站"]
PAIRS = [
    QAPair("订单总数是多少？", "SELECT COUNT(*) FROM orders;"),
    QAPair("所有订单的总金额是多少？", "SELECT SUM(amount) FROM orders;"),
]
PROVENANCE = training.Provenance(
    task_id="task_20261201_000000", db_name="shop", ddl_files=["orders.ddl", "stations.ddl"],
    documentation_files=["orders_detail.md", "stations_detail.md"], pair_file="qs_shop_20261201_pair.json",
    writers={"ddl": training.describe_writer("heuristic (no LLM configured)"),
             "documentation": training.describe_writer("heuristic (no LLM configured)"),
             "sql": training.describe_writer("openai-compatible:qwen-plus")},
)


@pytest.fixture(scope="module")
def embeddings():
    return vc.ProductEmbeddings()


def _load(url, embeddings, provenance=PROVENANCE):
    return training.load_training_data(url, embeddings.provider, ddl=DDL, documentation=DOCS, pairs=PAIRS,
                                       batch_size=8, provenance=provenance)


def _new(result):
    return result["ddl"], result["documentation"], result["sql"]


def _query(url, query, params=None):
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall()


def _pair_document(pair):
    return json.dumps({"question": pair.question, "sql": pair.sql}, ensure_ascii=False)


def _document_counts(url):
    return dict(_query(url, "select document, count(*) from langchain_pg_embedding group by document"))


def _table_shape(url):
    """Columns (name, type, not null, default) and constraints of both vector tables: what ALTER would change."""
    columns = _query(url, "select c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
                          "pg_get_expr(d.adbin, d.adrelid) from pg_attribute a join pg_class c on c.oid = a.attrelid "
                          "left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum "
                          "where c.relname in ('langchain_pg_collection', 'langchain_pg_embedding') "
                          "and a.attnum > 0 and not a.attisdropped order by 1, a.attnum")
    constraints = _query(url, "select conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
                              "from pg_constraint where conrelid in ('langchain_pg_collection'::regclass, "
                              "'langchain_pg_embedding'::regclass) order by 1, 2")
    return columns, constraints


def _indexes(url):
    return {r[0] for r in _query(url, "select indexname from pg_indexes where tablename = 'langchain_pg_embedding'")}


def _expected_metadata(collection, document, row_id):
    index = {"ddl": DDL, "documentation": DOCS}.get(collection)
    source = PROVENANCE.pair_file if index is None else (PROVENANCE.ddl_files if collection == "ddl" else
                                                         PROVENANCE.documentation_files)[index.index(document)]
    writer = {"provider": "openai-compatible", "model": "qwen-plus"} if collection == "sql" else \
        {"provider": "heuristic", "model": None}
    return {"id": row_id, "task_id": PROVENANCE.task_id, "db_name": "shop", "source_file": source, **writer,
            "embedding_model": "all-MiniLM-L6-v2", "embedding_dim": 384, "loaded_by": "data_pipeline"}


def test_langchain_postgres_and_vanna_read_what_the_product_loaded(scratch_db, embeddings):
    first = _load(scratch_db, embeddings)
    assert first["layout"] == "langchain_postgres" and _new(first) == (2, 2, 2)

    for collection, texts in (("ddl", DDL), ("documentation", DOCS)):
        found = vc.postgres_store(scratch_db, embeddings, collection).similarity_search("订单金额", k=10)
        assert sorted(d.page_content for d in found) == sorted(texts)
        assert all(d.metadata == _expected_metadata(collection, d.page_content, d.metadata["id"]) for d in found)
    best = vc.postgres_store(scratch_db, embeddings, "sql").similarity_search("total amount of all orders", k=1)
    assert json.loads(best[0].page_content)["sql"] == "SELECT SUM(amount) FROM orders;"

    vn = vc.vanna_client(scratch_db, embeddings)
    assert sorted(vn.get_related_ddl("订单金额")) == sorted(DDL)
    assert sorted(vn.get_related_documentation("收费站")) == sorted(DOCS)
    similar = vn.get_similar_question_sql("订单总数")
    assert sorted(similar, key=lambda p: p["sql"]) == sorted((p.to_dict() for p in PAIRS), key=lambda p: p["sql"])
    data = vn.get_training_data()
    assert sorted(data["training_data_type"]) == ["ddl", "ddl", "documentation", "documentation", "sql", "sql"]
    assert sorted(data.loc[data["training_data_type"] == "sql", "question"]) == sorted(p.question for p in PAIRS)

    # (d) the product loading the same files again adds nothing
    again = _load(scratch_db, embeddings)
    assert _new(again) == (0, 0, 0) and again["skipped_existing"] == 6 and again["skipped_same_document"] == 0
    assert again["total_rows"] == first["total_rows"] == {"ddl": 2, "documentation": 2, "sql": 2}


def test_product_writes_into_a_langchain_community_store_without_altering_it(scratch_db, embeddings):
    user_store = vc.community_store(scratch_db, embeddings, "sql")
    user_store.add_texts(["用户自己写的一条记录"], metadatas=[{"from": "user"}])
    shape, indexes = _table_shape(scratch_db), _indexes(scratch_db)
    assert ("langchain_pg_embedding", "custom_id", "character varying", False, None) in shape[0]

    first = _load(scratch_db, embeddings)
    assert first["layout"] == "langchain_community" and _new(first) == (2, 2, 2)
    assert _table_shape(scratch_db) == shape  # no column, type or constraint added or changed
    assert _indexes(scratch_db) - indexes == {vector_layout.CONTENT_INDEX, vector_layout.HNSW_INDEX}

    for collection, texts in (("ddl", DDL), ("documentation", DOCS), ("sql", [_pair_document(p) for p in PAIRS])):
        found = vc.community_store(scratch_db, embeddings, collection).similarity_search("订单", k=10)
        product = [d for d in found if d.metadata.get("loaded_by") == "data_pipeline"]
        assert sorted(d.page_content for d in product) == sorted(texts)
        assert all(d.metadata == _expected_metadata(collection, d.page_content, d.metadata["id"]) for d in product)
    rows = _query(scratch_db, "select uuid::text, custom_id, cmetadata, document from langchain_pg_embedding")
    assert len(rows) == 7
    for row_uuid, custom_id, cmetadata, document in rows:
        if cmetadata.get("from") == "user":
            assert document == "用户自己写的一条记录"
            continue
        assert custom_id == cmetadata["id"] and custom_id[-4:] in {"-ddl", "-doc", "-sql"}
        assert row_uuid == custom_id[:36]

    again = _load(scratch_db, embeddings)
    assert _new(again) == (0, 0, 0) and again["skipped_existing"] == 6
    assert len(_query(scratch_db, "select 1 from langchain_pg_embedding")) == 7


def test_community_layout_backup_restores_into_an_empty_database(scratch_db, pg_url, embeddings):
    vc.community_store(scratch_db, embeddings, "sql").add_texts(["用户的记录"])
    _load(scratch_db, embeddings)
    files = MemoryFiles()
    vectors.backup_vector_tables(scratch_db, files, "20261201_000000")
    dump = "select uuid::text, collection_id::text, embedding::text, document, cmetadata::text, custom_id " \
           "from langchain_pg_embedding order by uuid"
    target = create_database(pg_url, f"t_{uuid.uuid4().hex[:12]}")
    try:
        report = vector_restore.restore_vector_backup(
            target, {t: files[vectors.backup_file_name(t, "20261201_000000")] for t in vectors.VECTOR_TABLES}, False)
        assert report[vector_layout.EMBEDDING_TABLE]["restored"] == 7
        assert _query(target, dump) == _query(scratch_db, dump)
        with psycopg2.connect(target) as conn, conn.cursor() as cur:
            assert vector_layout.detect_layout(cur) is vector_layout.COMMUNITY
        found = vc.community_store(target, embeddings, "ddl").similarity_search("订单", k=10)
        assert sorted(d.page_content for d in found) == sorted(DDL)
    finally:
        drop_database(pg_url, database_name(target))


def test_vanna_train_then_product_load_adds_no_row(scratch_db, embeddings):
    vn = vc.vanna_client(scratch_db, embeddings)
    vanna_ids = [vn.train(question=PAIRS[0].question, sql=PAIRS[0].sql), vn.train(ddl=DDL[0]),
                 vn.train(documentation=DOCS[0])]
    result = _load(scratch_db, embeddings)
    assert _new(result) == (1, 1, 1) and result["skipped_same_document"] == 3
    counts = _document_counts(scratch_db)
    assert len(counts) == 6 and set(counts.values()) == {1}  # one row per document, whoever wrote it
    kept = {r[0] for r in _query(scratch_db, "select id from langchain_pg_embedding")}
    assert set(vanna_ids) <= kept  # Vanna's own rows (uuid4 ids) are the ones kept
    assert sorted(vn.get_similar_question_sql("订单"), key=lambda p: p["sql"]) == \
        sorted((p.to_dict() for p in PAIRS), key=lambda p: p["sql"])


def test_product_load_then_vanna_train_and_a_reload(scratch_db, embeddings):
    """Vanna's train() always inserts a new row (uuid4 id); the product cannot stop that. What it guarantees:
    its own loads never add a copy of a document the collection already holds."""
    _load(scratch_db, embeddings)
    vn = vc.vanna_client(scratch_db, embeddings)
    vanna_id = vn.train(question=PAIRS[0].question, sql=PAIRS[0].sql)
    assert _document_counts(scratch_db)[_pair_document(PAIRS[0])] == 2  # Vanna's second copy
    assert vanna_id in {r[0] for r in _query(scratch_db, "select id from langchain_pg_embedding")}
    again = _load(scratch_db, embeddings)
    assert _new(again) == (0, 0, 0)
    counts = _document_counts(scratch_db)
    assert counts[_pair_document(PAIRS[0])] == 2 and sum(counts.values()) == 7  # the reload added nothing


def test_document_lookup_uses_the_md5_index(scratch_db):
    conn = psycopg2.connect(scratch_db)
    try:
        training.ensure_vector_tables(conn, 3)
        collection = training._collection_ids(conn, ["sql"])["sql"]
        with conn, conn.cursor() as cur:
            cur.execute("insert into langchain_pg_embedding (id, collection_id, embedding, document, cmetadata) "
                        "select 'r' || g, %s, '[1,2,3]', 'document ' || g, '{}' from generate_series(1, 20000) g",
                        (collection,))
            cur.execute("analyze langchain_pg_embedding")
            cur.execute("select indexdef from pg_indexes where indexname = %s", (vector_layout.CONTENT_INDEX,))
            assert "(collection_id, md5((document)::text))" in cur.fetchone()[0]
            wanted = [(collection, "document 17"), (collection, "not stored"), (collection, "document 19999")]
            cur.execute(pgsql.SQL("EXPLAIN (FORMAT JSON) ") + vector_layout.DOCUMENT_LOOKUP,
                        ([c for c, _ in wanted], [d for _, d in wanted]))
            plan = json.dumps(cur.fetchone()[0])
        assert f'"Index Name": "{vector_layout.CONTENT_INDEX}"' in plan and "Seq Scan" not in plan
        assert vector_layout.stored_documents(conn, wanted) == {0, 2}
    finally:
        conn.close()


def test_an_equivalent_user_index_is_reused_and_unknown_layouts_are_refused(scratch_db):
    with psycopg2.connect(scratch_db) as conn, conn.cursor() as cur:
        cur.execute("create table langchain_pg_collection (uuid uuid primary key, name varchar, cmetadata json)")
        cur.execute("create table langchain_pg_embedding (id varchar primary key, collection_id uuid, "
                    "embedding vector(3), document text, cmetadata jsonb)")
        cur.execute("create index my_md5 on langchain_pg_embedding (collection_id, md5(document))")
    conn = psycopg2.connect(scratch_db)
    try:
        training.ensure_vector_tables(conn, 3)
    finally:
        conn.close()
    assert _indexes(scratch_db) >= {"my_md5"} and vector_layout.CONTENT_INDEX not in _indexes(scratch_db)

    with psycopg2.connect(scratch_db) as conn, conn.cursor() as cur:
        cur.execute("drop table langchain_pg_embedding")
        cur.execute("create table langchain_pg_embedding (pk bigint primary key, collection_id uuid, "
                    "embedding vector(3), document text, cmetadata jsonb)")
    shape = _table_shape(scratch_db)
    conn = psycopg2.connect(scratch_db)
    try:
        with pytest.raises(errors.StepFailed, match=r"primary key \(pk\).*left unchanged"):
            training.ensure_vector_tables(conn, 3)
    finally:
        conn.close()
    assert _table_shape(scratch_db) == shape


def test_community_layout_with_jsonb_metadata_takes_the_binary_copy_path(scratch_db, embeddings):
    """langchain_community with use_jsonb=True: the same tables, jsonb cmetadata, so COPY goes straight in."""
    conn = psycopg2.connect(scratch_db)
    try:
        training.ensure_vector_tables(conn, 384, layout="langchain_community")
        with conn, conn.cursor() as cur:
            assert vector_layout.detect_layout(cur) is vector_layout.COMMUNITY
            assert vector_layout.direct_copy_ok(cur, vector_layout.COMMUNITY)
    finally:
        conn.close()
    first = _load(scratch_db, embeddings)
    assert first["layout"] == "langchain_community" and _new(first) == (2, 2, 2)
    rows = _query(scratch_db, "select uuid::text, custom_id, cmetadata, document from langchain_pg_embedding")
    assert len(rows) == 6
    for row_uuid, custom_id, cmetadata, _document in rows:
        assert custom_id == cmetadata["id"] and row_uuid == custom_id[:36]
    found = vc.community_store(scratch_db, embeddings, "sql").similarity_search("total amount of all orders", k=1)
    assert json.loads(found[0].page_content)["sql"] == "SELECT SUM(amount) FROM orders;"
    assert found[0].metadata == _expected_metadata("sql", found[0].page_content, found[0].metadata["id"])
    assert _new(_load(scratch_db, embeddings)) == (0, 0, 0)


def test_writer_names_from_the_recorded_llm_usage():
    assert training.describe_writer("heuristic (no LLM configured)") == {"provider": "heuristic", "model": None}
    assert training.describe_writer("openai-compatible:deepseek-chat") == {"provider": "openai-compatible",
                                                                           "model": "deepseek-chat"}
    assert training.describe_writer(None) == {"provider": "unknown", "model": None}  # nothing recorded: not guessed
