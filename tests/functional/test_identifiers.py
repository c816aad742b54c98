"""Identifiers exactly as the catalog has them (issue 8, finding 1), on a hostile schema in a real PostgreSQL:
quoted mixed case, key words, leading digits, spaces and embedded quotes, one table name in several schemas,
domain and enum types, a view, a materialized view, an empty table, a table without primary key, and a
"Dup"/dup pair that makes the unquoted `Dup` ambiguous. Every name the API returns is given back to it."""
from __future__ import annotations

import re
import uuid

import psycopg2
import pytest

from chalicelib.pipeline import ddl
from chalicelib.pipeline.db import connect
from chalicelib.pipeline.introspect import introspect_tables
from chalicelib.pipeline.models import TableMeta, TableRef, quote_ident
from chalicelib.pipeline.tablelist import parse_table_list, parse_table_names
from tests.support.aws_api import api_environment, post_json

DATABASE_API = "/api/v0/database"

HOSTILE_SQL = """
create schema "Sales";
create schema ods;
create domain positive_int as integer check (value > 0);
create type mood as enum ('ok', 'bad');
create table public."SalesOrder" (
    id integer primary key, "Group" integer, "Year" integer, "Type" text, "Natural" boolean,
    qty positive_int, feeling mood not null default 'ok', "Created At" timestamptz
);
comment on table public."SalesOrder" is 'orders as the ERP writes them';
comment on column public."SalesOrder"."Group" is 'customer group';
create table public."OrderLine" (
    "SalesOrderId" integer references public."SalesOrder" (id), "order" integer, "user" text, amount numeric(10,2)
);
create table public."2019" (overall_rank serial primary key, "Score" numeric(5,2), country varchar(255) not null);
create table public."order" (id integer primary key, "select" text);
create table "Sales".customers (id integer primary key, "Name" text);
create table ods.customers (id integer primary key, code varchar(8));
create table public.customers (id integer primary key, since date);
create table public."my table" ("my column" integer, "quote""d" text, "中文列" text);
create table public."we""ird" (a integer);
create table public.empty_table (a integer, b text);
create table public."Dup" (a integer);
create table public.dup (b integer);
create view public."V_Orders" as select id, "Group", "Type" from public."SalesOrder" where "Natural";
create materialized view public.mv_totals as
    select "Group", count(*) as n, sum(qty) as total from public."SalesOrder" group by "Group";
insert into public."SalesOrder" (id, "Group", "Year", "Type", "Natural", qty, feeling)
    select g, g % 3, 2000 + g, (array['A', 'B'])[1 + g % 2], g % 2 = 0, g, 'ok' from generate_series(1, 12) g;
insert into public."OrderLine" select 1 + g % 12, g, 'u' || g, g * 1.5 from generate_series(1, 30) g;
insert into public."2019" ("Score", country) values (7.5, 'Finland'), (7.2, 'Denmark');
insert into public."my table" values (1, 'x', '值');
refresh materialized view public.mv_totals;
"""

VIEWS = ['public."V_Orders"', "public.mv_totals"]




@pytest.fixture
def client(monkeypatch, tmp_path):
    with api_environment(monkeypatch, tmp_path) as c:
        yield c


# -- helpers shared with test_realdbs_ddl -------------------------------------------------------------------------


def replay_ddl(conn, text: str, ref: TableRef, target_schema: str) -> TableRef:
    """Execute a generated DDL in `target_schema` (created if needed): the one statement's qualified name is
    rewritten there, exactly once; returns the replayed relation's name."""
    target = TableRef(target_schema, ref.name)
    heads = [f"create {kind} {ref.sql_name} " for kind in ("table", "view", "materialized view")]
    hits = [(head, text.count(head)) for head in heads if head in text]
    assert len(hits) == 1 and hits[0][1] == 1, (ref, text)
    head = hits[0][0]
    with conn.cursor() as cur:
        cur.execute(f"create schema if not exists {quote_ident(target_schema)}")
        cur.execute(text.replace(head, head.replace(ref.sql_name, target.sql_name)))
    return target


def column_shapes(meta: TableMeta, *, nullability: bool = True) -> list[tuple]:
    return [(c.name, c.data_type, c.nullable if nullability else None) for c in meta.columns]


def assert_replays_with_every_column(conn, metas: dict[TableRef, TableMeta], texts: dict[TableRef, str]) -> None:
    """Each DDL re-executes in a scratch schema (one per source schema: equal names never meet) and the relation
    it creates has exactly the source's columns, types and (for tables) nullability."""
    scratch = {schema: f"replay_{uuid.uuid4().hex[:8]}" for schema in {ref.schema for ref in metas}}
    replayed = {ref: replay_ddl(conn, texts[ref], ref, scratch[ref.schema]) for ref in metas}
    found, problems = introspect_tables(conn, list(replayed.values()), exact_count_threshold=1000)
    assert not problems
    for ref, meta in metas.items():
        copy = found[replayed[ref]]
        assert column_shapes(copy, nullability=not meta.is_view) == column_shapes(meta, nullability=not meta.is_view)
        assert copy.kind == meta.kind if meta.is_view else copy.kind == "table"
        assert copy.primary_key == meta.primary_key


# -- the resolver ---------------------------------------------------------------------------------------------


def test_written_names_resolve_exactly_then_by_folding_and_ambiguity_names_both(hostile_db):
    conn = connect(hostile_db)
    try:
        names = parse_table_list("SalesOrder\npublic.\"SalesOrder\"\nSALESORDER\npublic.2019\n2019\nPublic.OrderLine\n"
                                 'Dup\ndup\n"Dup"\nsales.customers\n"Sales".customers\nSales.customers\n'
                                 'public."we""ird"\n"my table"\nV_Orders\nsalesorder\nnowhere.x\npublic."2020"')
        found, problems = introspect_tables(conn, names, exact_count_threshold=1000)
    finally:
        conn.close()
    resolved = {name.text: meta.ref for name, meta in found.items()}
    assert resolved == {
        "public.SalesOrder": TableRef("public", "SalesOrder"),  # exact match of the unquoted spelling
        'public."SalesOrder"': TableRef("public", "SalesOrder"),
        'public."2019"': TableRef("public", "2019"),  # `public.2019` and `2019`: accepted, matched exactly
        "Public.OrderLine": TableRef("public", "OrderLine"),  # schema by folding, table exactly
        "public.dup": TableRef("public", "dup"),
        'public."Dup"': TableRef("public", "Dup"),
        '"Sales".customers': TableRef("Sales", "customers"),
        "Sales.customers": TableRef("Sales", "customers"),  # "Sales" exactly (no schema `sales` exists)
        'public."we""ird"': TableRef("public", 'we"ird'),
        'public."my table"': TableRef("public", "my table"),
        "public.V_Orders": TableRef("public", "V_Orders"),
    }
    messages = {name.text: (problem.kind, str(problem)) for name, problem in problems.items()}
    assert messages["public.Dup"] == ("ambiguous", 'table name public.Dup is ambiguous: it matches public."Dup" and '
                                                   'public.dup; quote the name to choose one (e.g. public."Dup")')
    assert messages["public.SALESORDER"][0] == "missing"  # folds to salesorder, which does not exist
    assert messages["public.salesorder"] == (
        "missing", 'table public.salesorder does not exist; names differing only in case: public."SalesOrder"')
    assert messages["sales.customers"] == (
        "missing", 'table sales.customers does not exist (schema sales not found); '
                   'names differing only in case: "Sales".customers')
    assert messages["nowhere.x"] == ("missing", "table nowhere.x does not exist (schema nowhere not found)")
    assert messages['public."2020"'] == ("missing", 'table public."2020" does not exist')
    assert len(found) + len(problems) == len(names)


def test_file_stems_never_collide_and_are_file_safe():
    refs = [TableRef("public", "SalesOrder"), TableRef("public", "salesorder"), TableRef("public", "SALESORDER"),
            TableRef("Sales", "customers"), TableRef("sales", "customers"), TableRef("ods", "customers"),
            TableRef("public", "customers"), TableRef("public", "ods__customers"), TableRef("ods_", "_customers"),
            TableRef("ods", "_customers"), TableRef("public", "my table"), TableRef("public", "my_table"),
            TableRef("public", 'we"ird'), TableRef("public", "we/ird"), TableRef("public", "../etc"),
            TableRef("public", "2019"), TableRef("public", "表"), TableRef("a.b", "c"), TableRef("a", "b.c")]
    stems = [ref.file_stem for ref in refs]
    assert len({s.casefold() for s in stems}) == len(refs), stems
    assert all(re.fullmatch(r"[\w\-]+", s) and not s.startswith("-") for s in stems), stems
    # Plain names keep the names SPEC §4 gives them.
    assert TableRef("public", "bss_company").file_stem == "bss_company"
    assert TableRef("ods", "orders").file_stem == "ods__orders"
    assert TableRef("public", "2019").file_stem == "2019"
    assert TableRef("public", "SalesOrder").file_stem.startswith("SalesOrder-")


def test_every_shown_name_finds_its_table_again_among_the_docs():
    """Theme tables (the LLM's or the heuristic's) are matched back to docs by the names shown."""
    from chalicelib.pipeline.models import TableDoc
    from chalicelib.pipeline.schema_text import find_doc

    refs = [TableRef("public", 'we"ird'), TableRef("public", 'x"'), TableRef("public", "SalesOrder"),
            TableRef("Sales", "customers"), TableRef("ods", "customers"), TableRef("public", "my table"),
            TableRef("public", "2019"), TableRef("a.b", "c")]
    docs = [TableDoc(TableMeta(ref, None, "table", [], [], [], 0, False), None, {}, {}, {}, []) for ref in refs]
    for doc in docs:
        assert find_doc(doc.meta.ref.display_name, docs) is doc, doc.meta.ref


# -- the database tools: list -> ddl round trip -------------------------------------------------------------------


def test_every_listed_name_round_trips_through_the_database_tools_and_its_ddl_replays(client, hostile_db):
    listed = post_json(client, f"{DATABASE_API}/tables", {"db_connection": hostile_db})
    assert listed.status_code == 200, listed.json_body
    tables = listed.json_body["data"]["tables"]
    assert 'public."SalesOrder"' in tables and 'public."2019"' in tables and "public.dup" in tables
    assert 'public."Dup"' in tables and 'public."we""ird"' in tables and '"Sales".customers' in tables
    assert "public.empty_table" in tables and 'public."order"' in tables
    metas: dict[TableRef, TableMeta] = {}
    texts: dict[TableRef, str] = {}
    for name in tables + VIEWS:
        res = post_json(client, f"{DATABASE_API}/table/ddl", {"db_connection": hostile_db, "table": name,
                                                             "type": "both"})
        assert res.status_code == 200, (name, res.json_body)
        data = res.json_body["data"]
        assert data["table_info"]["full_name"] == name  # the name shown is the name given
        again = post_json(client, f"{DATABASE_API}/table/ddl", {"db_connection": hostile_db, "type": "ddl",
                                                               "table": data["table_info"]["full_name"]})
        assert again.status_code == 200 and again.json_body["data"]["ddl"] == data["ddl"]
        ref = TableRef(data["table_info"]["schema_name"], data["table_info"]["table_name"])
        texts[ref] = data["ddl"]
        assert [f["column_name"] for f in data["fields"]] == [c for c in _catalog_columns(hostile_db, ref)]
    conn = connect(hostile_db)
    conn.autocommit = True
    try:
        found, _ = introspect_tables(conn, list(texts), exact_count_threshold=1000)
        metas = {ref: found[ref] for ref in texts}
        assert_replays_with_every_column(conn, metas, texts)
    finally:
        conn.close()
    order = texts[TableRef("public", "SalesOrder")]
    assert 'create table public."SalesOrder" (' in order
    assert '  "Group" integer,  -- customer group' in order and '  "Natural" boolean,' in order
    assert '  "Created At" timestamptz' in order and "  qty positive_int," in order
    view = texts[TableRef("public", "V_Orders")]
    assert "create table" not in view and 'create view public."V_Orders" as select' in view
    assert "This is a view" in view and '"SalesOrder"' in view  # its definition, in the header
    assert "row count not computed" in view
    assert "create materialized view public.mv_totals as select" in texts[TableRef("public", "mv_totals")]


def _catalog_columns(url: str, ref: TableRef) -> list[str]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("select attname from pg_attribute where attrelid = %s::regclass and attnum > 0 "
                    "and not attisdropped order by attnum", (ref.sql_name,))
        return [row[0] for row in cur.fetchall()]


def test_mixed_case_names_as_issue_8_reports_them(client, hostile_db):
    """The issue's own reproduction: the unquoted spelling the old list returned is accepted too."""
    for name in ("public.SalesOrder", "SalesOrder", "public.OrderLine", "public.2019"):
        res = post_json(client, f"{DATABASE_API}/table/ddl", {"db_connection": hostile_db, "table": name})
        assert res.status_code == 200, (name, res.json_body)
    ambiguous = post_json(client, f"{DATABASE_API}/table/ddl", {"db_connection": hostile_db, "table": "Dup"})
    assert ambiguous.status_code == 400, ambiguous.json_body
    error = ambiguous.json_body["error"]
    assert error["code"] == "INVALID_TABLE_NAME" and error["invalid_params"] == ["table"]
    assert 'public."Dup"' in ambiguous.json_body["message"] + str(error) and "public.dup" in str(ambiguous.json_body)
    missing = post_json(client, f"{DATABASE_API}/table/ddl", {"db_connection": hostile_db, "table": "salesorder"})
    assert missing.status_code == 404 and 'public."SalesOrder"' in str(missing.json_body)


# -- generated SQL quotes what needs quoting ----------------------------------------------------------------------


def test_samples_enums_and_heuristic_sql_run_on_quoted_names(hostile_db):
    from chalicelib.providers.heuristic import HeuristicProvider

    conn = connect(hostile_db)
    conn.autocommit = True
    try:
        names = parse_table_names(['"SalesOrder"', '"OrderLine"', "public.2019", '"my table"', "V_Orders"])
        found, problems = introspect_tables(conn, names, exact_count_threshold=1000)
        assert not problems
        provider = HeuristicProvider()
        docs = [ddl.build_table_doc(conn, found[n], provider, "order analytics") for n in names]
        order = docs[0]
        assert order.samples and set(order.samples[0]) >= {"Group", "Year", "Type", "Natural"}
        assert order.enums.get("feeling") == ["ok", "bad"]
        assert set(order.comment_sources.values()) <= {"database", "heuristic"}
        assert order.comment_sources["Group"] == "database"
        md = ddl.render_md(order, "order analytics")
        assert md.startswith('## "SalesOrder"') and '- "Group" (integer) - customer group' in md
        themes = provider.extract_themes(docs, "order analytics", 3)
        pairs = [p for theme in themes for p in provider.generate_pairs(theme, docs, "order analytics", 5)]
        assert pairs
        with conn.cursor() as cur:
            for pair in pairs:
                cur.execute("explain " + pair.sql)  # every heuristic SQL is valid over the quoted names
    finally:
        conn.close()


def test_a_view_is_never_run_to_count_and_is_sampled_under_a_timeout(hostile_db, monkeypatch, caplog):
    conn = connect(hostile_db)
    conn.autocommit = True
    with conn.cursor() as cur:
        # Running this view raises; running the other takes 30 s per row.
        cur.execute("create function explode() returns int language plpgsql as "
                    "$$ begin raise exception 'the view was run'; end $$")
        cur.execute("create view explosive as select explode() as x")
        cur.execute("create view slow as select g from generate_series(1, 3) g cross join pg_sleep(30) p")
    try:
        names = parse_table_names(["explosive", "slow"])
        found, problems = introspect_tables(conn, names, exact_count_threshold=1000)
        assert not problems  # introspection never ran either view (no count(*) of a view)
        assert all(m.kind == "view" and not m.row_count_exact for m in found.values())
        monkeypatch.setattr(ddl, "VIEW_READ_TIMEOUT_MS", 300)
        slow = found[names[1]]
        import time

        started = time.monotonic()
        assert ddl.sample_rows(conn, slow, 20) == []  # stopped by the timeout, said so in the log
        assert time.monotonic() - started < 5
        assert any("statement timeout" in r.getMessage() and getattr(r, "table", "") == "public.slow"
                   for r in caplog.records)
        with conn.cursor() as cur:
            cur.execute("show statement_timeout")
            assert cur.fetchone()[0] == "0"  # the session's own setting is back
        assert "create view public.slow as select" in ddl.render_ddl(
            ddl.build_table_doc(conn, slow, _NoComments(), ""), "")
    finally:
        conn.close()


class _NoComments:
    name = "none"
    kind = "heuristic"

    def suggest_table_comments(self, meta, samples, business_context):
        from chalicelib.pipeline.models import CommentSuggestion

        return CommentSuggestion(table_comment=None, enum_candidates=[c.name for c in meta.columns])


# -- a task: table list -> ddl_generation on the local stack ------------------------------------------------------

TASKS = "/api/v0/data_pipeline/tasks"
