"""HeuristicProvider on a real PostgreSQL schema: every SQL it writes must pass EXPLAIN there."""
from __future__ import annotations

import re

import psycopg2
import pytest
from psycopg2 import sql as pgsql

from chalicelib.pipeline import qa
from chalicelib.pipeline.models import (
    ColumnMeta,
    ForeignKey,
    QAPair,
    RepairRequest,
    TableDoc,
    TableMeta,
    TableRef,
)
from chalicelib.providers.factory import get_llm_provider
from chalicelib.providers.heuristic import HeuristicProvider
from tests.conftest import run_sql

SCHEMA = """
create schema ops;
create table company (
  id varchar(32) primary key,
  company_name varchar(255) not null,
  company_no varchar(255),
  create_ts timestamp default now(),
  delete_ts timestamp
);
comment on table company is '公司信息';
comment on column company.company_name is '公司名称';
create table service_area (
  id varchar(32) primary key,
  service_area_name varchar(255) not null,
  service_area_no varchar(255),
  company_id varchar(32) references company(id),
  service_state varchar(50),
  service_area_type varchar(50),
  longitude numeric(10,6),
  latitude numeric(10,6),
  create_ts timestamp,
  delete_ts timestamp
);
comment on table service_area is '服务区';
create table business_day_data (
  id varchar(32) primary key,
  oper_date date not null,
  service_area_id varchar(32) references service_area(id),
  branch_name varchar(255),
  wx numeric(19,4),
  zfb numeric(19,4),
  rmb numeric(19,4),
  pay_sum numeric(19,4),
  order_sum integer,
  source_type integer,
  create_ts timestamp,
  delete_ts timestamp
);
comment on table business_day_data is '服务区营业日数据';
create table "CarFlow" (
  "Id" serial primary key,
  "ServiceAreaId" varchar(32) references service_area(id),
  count_date date,
  customer_count bigint,
  car_type varchar(100)
);
create table ops.audit_note (
  id bigserial primary key,
  note text,
  created_at timestamptz default now()
);
insert into company values ('c1', '东部公司', 'C001', now(), null), ('c2', '西部公司', 'C002', now(), null);
insert into service_area values
  ('s1', '庐山服务区', 'SA01', 'c1', '开放', '信息化服务区', 116.0, 29.5, now(), null),
  ('s2', '南城服务区', 'SA02', 'c1', '开放', '智能化服务区', 116.2, 28.5, now(), null),
  ('s3', '北岭服务区', 'SA03', 'c2', '关闭', '信息化服务区', 115.2, 30.1, now(), null),
  ('s4', 'O''Brien 服务区', 'SA04', 'c2', '上传数据', '信息化服务区', 115.9, 29.9, now(), null);
insert into business_day_data
select 'b' || g, date '2023-04-01' + (g % 10), 's' || (1 + g % 4), '分支' || (g % 3), g * 1.5, g * 2.5, g, g * 5,
       g % 7, g % 2, now(), case when g % 11 = 0 then now() end
from generate_series(1, 40) g;
insert into "CarFlow" ("ServiceAreaId", count_date, customer_count, car_type)
select 's' || (1 + g % 4), date '2023-04-01' + (g % 5), g * 10, (array['客车','货车','危化品','城际'])[1 + g % 4]
from generate_series(1, 20) g;
"""

ENUM_MAX_DISTINCT = 20


def _load_metas(conn) -> dict[TableRef, TableMeta]:
    """A tiny stand-in for helper C's introspection: enough catalog facts to build TableDocs."""
    with conn.cursor() as cur:
        cur.execute("""
            select n.nspname, c.relname, obj_description(c.oid, 'pg_class'), c.oid
            from pg_class c join pg_namespace n on n.oid = c.relnamespace
            where c.relkind = 'r' and n.nspname in ('public', 'ops') order by 1, 2""")
        tables = cur.fetchall()
        metas = {}
        for schema, name, comment, oid in tables:
            cur.execute("""
                select a.attname, format_type(a.atttypid, a.atttypmod), t.typname, not a.attnotnull,
                       pg_get_expr(d.adbin, d.adrelid), col_description(a.attrelid, a.attnum), a.attnum,
                       coalesce(a.attnum = any(i.indkey), false)
                from pg_attribute a join pg_type t on t.oid = a.atttypid
                left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
                left join pg_index i on i.indrelid = a.attrelid and i.indisprimary
                where a.attrelid = %s and a.attnum > 0 and not a.attisdropped order by a.attnum""", (oid,))
            columns = [
                ColumnMeta(name=r[0], data_type=r[1], udt_name=r[2], type_kind="base", max_length=None,
                           nullable=r[3], default=r[4], comment=r[5], is_primary_key=r[7], ordinal=r[6])
                for r in cur.fetchall()
            ]
            cur.execute("""
                select con.conname, array(select attname from unnest(con.conkey) k
                                            join pg_attribute a on a.attrelid = con.conrelid and a.attnum = k),
                       rn.nspname, rc.relname,
                       array(select attname from unnest(con.confkey) k
                               join pg_attribute a on a.attrelid = con.confrelid and a.attnum = k)
                from pg_constraint con join pg_class rc on rc.oid = con.confrelid
                join pg_namespace rn on rn.oid = rc.relnamespace
                where con.conrelid = %s and con.contype = 'f' order by 1""", (oid,))
            fks = [ForeignKey(name=r[0], columns=list(r[1]), ref_schema=r[2], ref_table=r[3], ref_columns=list(r[4]))
                   for r in cur.fetchall()]
            ref = TableRef(schema, name)
            cur.execute(pgsql.SQL("select count(*) from {}").format(pgsql.Identifier(schema, name)))
            metas[ref] = TableMeta(ref=ref, comment=comment, kind="table", columns=columns,
                                   primary_key=[c.name for c in columns if c.is_primary_key],
                                   foreign_keys=fks, row_count=cur.fetchone()[0], row_count_exact=True)
    return metas


def _build_docs(conn, provider: HeuristicProvider, context: str) -> list[TableDoc]:
    """What ddl_generation does, in miniature: samples, suggestions, enum confirmation (DB comments win)."""
    docs = []
    for ref, meta in sorted(_load_metas(conn).items()):
        with conn.cursor() as cur:
            cur.execute(pgsql.SQL("select * from {} limit 20").format(pgsql.Identifier(ref.schema, ref.name)))
            names = [d.name for d in cur.description]
            samples = [{k: (None if v is None else str(v)) for k, v in zip(names, row, strict=True)}
                       for row in cur.fetchall()]
        suggestion = provider.suggest_table_comments(meta, samples, context)
        enums = {}
        for column in suggestion.enum_candidates:
            with conn.cursor() as cur:
                cur.execute(pgsql.SQL("select distinct {c}::text from {t} where {c} is not null order by 1 limit %s")
                            .format(c=pgsql.Identifier(column), t=pgsql.Identifier(ref.schema, ref.name)),
                            (ENUM_MAX_DISTINCT + 1,))
                values = [r[0] for r in cur.fetchall()]
            if 0 < len(values) <= ENUM_MAX_DISTINCT:
                enums[column] = values
        column_comments = {c.name: c.comment for c in meta.columns if c.comment}
        for name, comment in suggestion.column_comments.items():
            if meta.column(name) is not None:
                column_comments.setdefault(name, comment)
        docs.append(TableDoc(meta=meta, table_comment=meta.comment or suggestion.table_comment,
                             column_comments=column_comments, comment_sources={}, enums=enums, samples=samples))
    return docs


def _explain_errors(conn, pairs: list[QAPair]) -> list[str]:
    problems = []
    for pair in pairs:
        with conn.cursor() as cur:
            try:
                cur.execute("begin read only")
                cur.execute("EXPLAIN " + pair.sql)
            except psycopg2.Error as exc:
                problems.append(f"{pair.sql}\n  -> {exc.pgerror or exc}")
            finally:
                conn.rollback()
    return problems


@pytest.fixture
def highway(scratch_db):
    run_sql(scratch_db, SCHEMA)
    conn = psycopg2.connect(scratch_db)
    yield conn
    conn.close()


ZH = "高速公路服务区运营管理，分析营收、车流和服务区状态"
EN = "Highway service area operations: revenue, traffic and service area status"


def test_get_llm_provider_without_base_url_is_heuristic():
    provider = get_llm_provider()
    assert isinstance(provider, HeuristicProvider)
    assert provider.name == "heuristic (no LLM configured)"


def test_every_heuristic_sql_passes_explain(highway):
    provider = HeuristicProvider()
    docs = _build_docs(highway, provider, ZH)
    themes = qa.extract_themes(provider, docs, ZH, 5)
    assert len(themes) == 5
    all_pairs = []
    for theme in themes:
        pairs = qa.generate_theme_pairs(provider, theme, docs, ZH, 10)
        assert pairs, theme
        all_pairs.append(pairs)
    flat = [p for group in all_pairs for p in group]
    assert _explain_errors(highway, flat) == []
    # Many, varied, single-line, ';'-terminated.
    assert len(flat) >= 30
    for pair in flat:
        assert "\n" not in pair.sql and "\n" not in pair.question
        assert pair.sql.endswith(";") and not pair.sql.endswith(";;")
    text = " ".join(p.sql for p in flat)
    for fragment in ("date_trunc('month'", "LIMIT 10", "JOIN", "delete_ts IS NULL", "GROUP BY", "BETWEEN",
                     '"CarFlow"', '"ServiceAreaId"', "sa.service_state = '",
                     # shapes beyond one-table templates: a share of the total, a window ranking, a CTE with
                     # month-over-month change, a filter on a real value of a joined table
                     "share_pct", "SUM(SUM(", "RANK() OVER (ORDER BY", "WITH monthly AS (", "LAG("):
        assert fragment in text, fragment
    joined_value = r"JOIN public\.(company|service_area) \w+ ON [^;]* WHERE \w+\.(company_name|service_area_name) = '"
    assert re.search(joined_value, text), "no filter on a real value of a joined table"
    # Joins of three tables along the relationships, each table's soft-delete filter applied.
    three = [p.sql for p in flat if p.sql.count(" JOIN ") == 2]
    assert three, "no three-table join"
    for sql in three:
        for alias in re.findall(r"FROM public\.(?:business_day_data|service_area|company) (\w+)|JOIN public\."
                                r"(?:business_day_data|service_area|company) (\w+)", sql):
            name = next(a for a in alias if a)
            assert f"{name}.delete_ts IS NULL" in sql, sql
    # A big pair count for one theme is exact when templates suffice, and never repeats SQL.
    fact_theme = themes[0]
    many = provider.generate_pairs(fact_theme, docs, ZH, 25)
    assert len(many) == 25
    assert len({p.sql for p in many}) == 25
    assert _explain_errors(highway, many) == []


def test_themes_follow_foreign_keys(highway):
    provider = HeuristicProvider()
    docs = _build_docs(highway, provider, ZH)
    themes = provider.extract_themes(docs, ZH, 5)
    first = themes[0]
    assert set(first.related_tables) == {"public.company", "public.service_area", "public.business_day_data",
                                         'public."CarFlow"'}  # quoted as the catalog has it (issue 8)
    assert first.related_tables[0] == "public.business_day_data"  # the fact table leads
    assert first.topic_name == "服务区营业日数据分析"
    assert "服务区" in first.biz_entities
    assert "pay_sum" in " ".join(first.biz_metrics) or "金额" in " ".join(first.biz_metrics)
    # Tables outside any cluster become their own theme; padding gives per-table themes, capped at count.
    assert any(t.related_tables == ["ops.audit_note"] for t in themes)
    assert len({t.topic_name for t in themes}) == len(themes) == 5
    assert provider.extract_themes(docs, ZH, 2) == themes[:2]


def test_deterministic(highway):
    first_provider, second_provider = HeuristicProvider(), HeuristicProvider()
    docs_a = _build_docs(highway, first_provider, ZH)
    docs_b = _build_docs(highway, second_provider, ZH)
    assert [d.to_dict() for d in docs_a] == [d.to_dict() for d in docs_b]
    themes_a = first_provider.extract_themes(docs_a, ZH, 4)
    themes_b = second_provider.extract_themes(docs_b, ZH, 4)
    assert themes_a == themes_b
    for theme_a, theme_b in zip(themes_a, themes_b, strict=True):
        assert first_provider.generate_pairs(theme_a, docs_a, ZH, 10) == \
            second_provider.generate_pairs(theme_b, docs_b, ZH, 10)


def test_chinese_and_english(highway):
    provider = HeuristicProvider()
    zh_docs = _build_docs(highway, provider, ZH)
    en_docs = _build_docs(highway, provider, EN)
    bdd_zh = next(d for d in zh_docs if d.meta.ref.name == "business_day_data")
    bdd_en = next(d for d in en_docs if d.meta.ref.name == "business_day_data")
    assert bdd_zh.column_comments["oper_date"] == "日期"
    assert bdd_zh.column_comments["delete_ts"] == "删除时间（软删除标记）"
    assert bdd_zh.column_comments["wx"] == "微信支付金额"
    assert bdd_zh.column_comments["service_area_id"] == "服务区ID"
    assert bdd_en.column_comments["delete_ts"] == "Deletion time (soft-delete marker)"
    assert bdd_en.column_comments["create_ts"] == "Creation time"
    # The existing database comment wins whatever the language.
    company_en = next(d for d in en_docs if d.meta.ref.name == "company")
    assert company_en.column_comments["company_name"] == "公司名称"
    theme_zh = provider.extract_themes(zh_docs, ZH, 1)[0]
    theme_en = provider.extract_themes(en_docs, EN, 1)[0]
    pairs_zh = provider.generate_pairs(theme_zh, zh_docs, ZH, 10)
    pairs_en = provider.generate_pairs(theme_en, en_docs, EN, 10)
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in p.question) for p in pairs_zh)
    assert pairs_en[0].question.startswith("How many")
    # Same tables, same SQL: only the wording changes.
    assert [p.sql for p in pairs_zh] == [p.sql for p in pairs_en]


def test_no_guess_for_unknown_names():
    from chalicelib.providers.heuristic.vocabulary import guess_column_comment

    assert guess_column_comment("xq_flibber", zh=True) is None
    assert guess_column_comment("xq_flibber", zh=False) is None
    assert guess_column_comment("id", zh=True) == "主键ID"
    assert guess_column_comment("branch_name", zh=True) == "分公司名称"
    assert guess_column_comment("order_count", zh=False) == "Order count"


def test_enum_candidates_from_names_and_samples(highway):
    provider = HeuristicProvider()
    docs = {d.meta.ref.name: d for d in _build_docs(highway, provider, ZH)}
    assert docs["service_area"].enums["service_state"] == ["上传数据", "关闭", "开放"]
    assert "service_area_type" in docs["service_area"].enums
    assert docs["CarFlow"].enums["car_type"] == ["危化品", "城际", "客车", "货车"]  # low cardinality in the samples
    assert "service_area_name" not in docs["service_area"].enums


def test_repair_sql_fixes_what_it_can(highway):
    provider = HeuristicProvider()
    docs = _build_docs(highway, provider, ZH)
    requests = [
        RepairRequest(0, "q", "SELECT service_area_nme FROM service_area", 'column "service_area_nme" does not exist'),
        RepairRequest(1, "q", 'SELECT s.servce_state FROM service_area s;', "column s.servce_state does not exist"),
        RepairRequest(2, "q", 'SELECT count(*) FROM carflow;', 'relation "carflow" does not exist'),
        RepairRequest(3, "q", "SELECT sum(x) FROM nowhere_at_all;", 'relation "nowhere_at_all" does not exist'),
        RepairRequest(4, "q", "SELECT \"serviceareaid\" FROM \"CarFlow\";",
                      'column "serviceareaid" does not exist'),
    ]
    repairs = provider.repair_sql(requests, docs)
    assert repairs == {
        0: "SELECT service_area_name FROM service_area;",
        1: "SELECT s.service_state FROM service_area s;",
        2: 'SELECT count(*) FROM "CarFlow";',
        4: 'SELECT "ServiceAreaId" FROM "CarFlow";',
    }
    assert _explain_errors(highway, [QAPair("q", s) for s in repairs.values()]) == []
