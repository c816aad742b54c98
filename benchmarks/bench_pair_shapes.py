"""pair_shapes: what the heuristic provider's Question→SQL pairs look like, and whether they lead to the tables.

For the demo highway database and each database of tests/fixtures/realdbs:

1. TableDocs as ddl_generation builds them (introspection, samples, the heuristic provider's comments, enum
   confirmation), themes and pairs as qa_generation asks the provider for them (DATA_PIPELINE_THEME_COUNT themes,
   DATA_PIPELINE_QUESTIONS_PER_THEME pairs each), every pair through the product's SQL validation (EXPLAIN);
2. the shape of each valid pair, read from PostgreSQL's own parse tree (pglast, chalicelib.pipeline.sqltext):
   joins (JoinExpr nodes), aggregation (an aggregate call or GROUP BY), a share or ratio (a division over an
   aggregate), a window function (`OVER`), a CTE (`WITH`), a soft-delete filter (`<marker> IS NULL` — counted
   over the pairs that read a table with a soft-delete column, and whether every such table is filtered), a date
   filter (a comparison with a `YYYY-MM-DD` literal);
3. the retrieval recall@1/@3 of the pairs' tables: the pairs alone in the `sql` collection of a fresh vector store,
   the team's question sets (tests/fixtures/questions) embedded with the default offline model and ranked by
   cosine distance as Vanna's get_similar_question_sql ranks them; baseline: the plain catalog DDL (names and
   types) in the `ddl` collection, same model, same questions.

The BENCH value is the pairs' table recall@3 over all questions; baseline the plain DDL's; the detail lines give
the shape distribution per database.

    python -m benchmarks.bench_pair_shapes [--databases NAME,NAME]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import time
from collections import Counter
from contextlib import closing
from typing import Any

import psycopg2
from pglast import parser

from benchmarks.bench_retrieval import (
    TableMapper,
    create_database,
    load_business_database,
    plain_catalog_ddl,
    recall,
)
from benchmarks.common import report
from benchmarks.pgtemp import bench_database
from benchmarks.questions import DATABASES, load_questions, table_key
from chalicelib.pipeline.sqltext import referenced_tables, walk_tree

AGGREGATES = {"count", "sum", "avg", "min", "max"}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def _with_database(url: str, dbname: str) -> str:
    head, _, query = url.partition("?")
    return f"{head.rsplit('/', 1)[0]}/{dbname}" + (f"?{query}" if query else "")


def table_docs(url: str, context: str) -> list[Any]:
    """TableDocs of every table, as ddl_generation builds them with the heuristic provider."""
    from chalicelib.config import get_settings
    from chalicelib.pipeline.ddl import build_table_doc
    from chalicelib.pipeline.introspect import introspect_tables
    from chalicelib.pipeline.models import TableRef
    from chalicelib.providers.heuristic import HeuristicProvider

    settings = get_settings()
    with closing(psycopg2.connect(url)) as conn:
        with conn.cursor() as cur:
            cur.execute("select n.nspname, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                        "where c.relkind in ('r', 'p') and n.nspname not in ('pg_catalog', 'information_schema') "
                        "and n.nspname not like 'pg_toast%' order by 1, 2")
            refs = [TableRef(schema, name) for schema, name in cur.fetchall()]
        found, problems = introspect_tables(conn, refs, exact_count_threshold=settings.exact_count_threshold)
        if problems:
            raise RuntimeError(f"introspection: {problems}")
        return [build_table_doc(conn, found[ref], HeuristicProvider(), context, sample_limit=settings.sample_rows,
                                enum_max_distinct=settings.enum_max_distinct) for ref in refs]


def heuristic_pairs(url: str, docs: list[Any], context: str) -> tuple[list[Any], int]:
    """The provider's pairs over the qa_generation themes, and how many failed validation (dropped)."""
    from chalicelib.config import get_settings
    from chalicelib.pipeline import qa
    from chalicelib.pipeline.validation import validate_pairs
    from chalicelib.providers.heuristic import HeuristicProvider

    settings = get_settings()
    provider = HeuristicProvider()
    themes = qa.extract_themes(provider, docs, context, settings.theme_count)
    pairs = [p for t in themes for p in qa.generate_theme_pairs(provider, t, docs, context,
                                                                 settings.questions_per_theme)]
    checked = validate_pairs(url, pairs, llm=None, docs=docs, enable_repair=False, max_rounds=0, timeout_ms=10_000)
    valid = [p for p, r in zip(pairs, checked.results, strict=True) if r.valid_before]
    return valid, len(pairs) - len(valid)


def _is_aggregate_call(node: Any) -> bool:
    if not isinstance(node, dict) or "FuncCall" not in node:
        return False
    call = node["FuncCall"]
    name = (call.get("funcname") or [{}])[-1].get("String", {}).get("sval", "")
    return name in AGGREGATES and "over" not in call


def _contains_aggregate(node: Any) -> bool:
    return _is_aggregate_call(node) or any(
        key == "FuncCall" and _is_aggregate_call({key: value}) for key, value in walk_tree(node))


def _null_tests(nodes: list[tuple[str, Any]]) -> set[tuple[str | None, str]]:
    """(qualifier or None, column) of every `… IS NULL` in the statement."""
    found: set[tuple[str | None, str]] = set()
    for key, value in nodes:
        if key == "NullTest" and value.get("nulltesttype") == "IS_NULL":
            column = value.get("arg", {}).get("ColumnRef", {})
            fields = [f.get("String", {}).get("sval") for f in column.get("fields", [])]
            if fields:
                found.add((fields[-2] if len(fields) >= 2 else None, fields[-1]))
    return found


def shape(sql: str, soft_delete_tables: dict[tuple[str | None, str], str]) -> dict[str, Any]:
    """The shape of one statement (see the module docstring)."""
    tree = json.loads(parser.parse_sql_json(sql))["stmts"]
    nodes = list(walk_tree(tree))
    joins = sum(1 for key, _ in nodes if key == "JoinExpr")
    aggregate = any(key == "groupClause" for key, _ in nodes) or any(
        key == "FuncCall" and _is_aggregate_call({key: v}) for key, v in nodes)
    share = any(key == "A_Expr" and [n.get("String", {}).get("sval") for n in v.get("name", [])] == ["/"]
                and (_contains_aggregate(v.get("lexpr")) or _contains_aggregate(v.get("rexpr"))
                     or any(k == "over" for k, _ in walk_tree(v)))
                for key, v in nodes)
    window = any(key == "FuncCall" and "over" in v for key, v in nodes)
    cte = any(key == "withClause" for key, _ in nodes)
    filtered = _null_tests(nodes)  # each soft-delete table read must be filtered through its alias
    read = [(schema or "public", name) for schema, name in referenced_tables(sql)]
    aliases = {((v.get("schemaname") or "public"), v["relname"]): (v.get("alias") or {}).get("aliasname", v["relname"])
               for key, v in nodes if key == "RangeVar" and isinstance(v, dict) and v.get("relname")}
    markers = [(aliases.get(t), soft_delete_tables[t]) for t in read if t in soft_delete_tables]
    date_filter = any(key == "whereClause" and any(
        k == "sval" and isinstance(x, dict) and _DATE.match(str(x.get("sval", ""))) for k, x in walk_tree(v))
        for key, v in nodes)
    return {"joins": joins, "tables": len(read), "aggregate": aggregate, "share": share, "window": window,
            "cte": cte, "reads_soft_delete": bool(markers),
            "soft_delete_all": bool(markers) and all(m in filtered or (len(read) == 1 and (None, m[1]) in filtered)
                                                     for m in markers),
            "date_filter": date_filter}


def distribution(shapes: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(shapes) or 1
    joins = Counter(min(s["joins"], 3) for s in shapes)
    soft = [s for s in shapes if s["reads_soft_delete"]]
    return {
        "pairs": len(shapes),
        "joins": {k: joins.get(k, 0) for k in range(4)},
        **{k: sum(s[k] for s in shapes) / n for k in ("aggregate", "share", "window", "cte", "date_filter")},
        "soft_delete": (sum(s["soft_delete_all"] for s in soft) / len(soft)) if soft else None,
        "soft_delete_pairs": len(soft),
    }


def _line(name: str, d: dict[str, Any], r: dict[str, Any] | None) -> str:
    joins = "/".join(str(d["joins"][k]) for k in range(4))
    soft = "n/a" if d["soft_delete"] is None else f"{d['soft_delete']:.0%} of {d['soft_delete_pairs']}"
    text = (f"  pair_shapes: {name:<16} {d['pairs']:>3} pairs; joins 0/1/2/3+ {joins}; aggregate {d['aggregate']:.0%} "
            f"share {d['share']:.0%} window {d['window']:.0%} CTE {d['cte']:.0%} date filter {d['date_filter']:.0%}"
            f"; soft-delete filtered on every table {soft}")
    if r:
        text += (f" | recall@1/@3 pairs {r['sql'][1]:.2f}/{r['sql'][3]:.2f} plain DDL "
                 f"{r['plain'][1]:.2f}/{r['plain'][3]:.2f} (n={r['n']})")
    return text


def main(argv: list[str] | None = None) -> int:
    from chalicelib.pipeline import training
    from chalicelib.providers.embeddings import DEFAULT_OFFLINE_MODEL, offline_embeddings
    from chalicelib.providers.heuristic.columns import soft_delete_column

    parser_ = argparse.ArgumentParser(prog="python -m benchmarks.bench_pair_shapes")
    parser_.add_argument("--databases", default=",".join(DATABASES))
    args = parser_.parse_args(argv)
    os.environ.setdefault("DATA_PIPELINE_LOG_LEVEL", "WARNING")
    started = time.monotonic()
    names = [n for n in args.databases.split(",") if n]
    embedder = offline_embeddings(DEFAULT_OFFLINE_MODEL)
    lines: list[str] = []
    every: list[dict[str, Any]] = []
    results: dict[str, dict[str, Any]] = {}
    dropped_total = 0
    with bench_database("bench_pair_shapes") as bench_url:
        server_url = _with_database(bench_url, "postgres")
        for name in names:
            url = load_business_database(server_url, name)
            docs = table_docs(url, DATABASES[name][1])
            pairs, dropped = heuristic_pairs(url, docs, DATABASES[name][1])
            dropped_total += dropped
            markers = {(d.meta.ref.schema, d.meta.ref.name): soft_delete_column(d.meta) for d in docs}
            shapes = [shape(p.sql, {k: v for k, v in markers.items() if v}) for p in pairs]
            every += shapes
            questions = load_questions(name)
            keys = [table_key(d.meta.ref.schema, d.meta.ref.name) for d in docs]
            entry: dict[str, Any] = {"n": len(questions)}
            for kind, collection in (("sql", "sql"), ("plain", "ddl")):
                store = create_database(server_url, f"vec_shapes_{kind}_{name}")
                training.load_training_data(store, embedder, ddl=plain_catalog_ddl(url) if kind == "plain" else [],
                                            documentation=[], pairs=pairs if kind == "sql" else [])
                with closing(psycopg2.connect(store)) as conn, conn.cursor() as cur:
                    cur.execute("set enable_indexscan = off")  # exact ranking
                    entry[kind] = recall(cur, embedder, questions, (collection,), TableMapper(None, keys))[collection]
            results[name] = entry
            lines.append(_line(name, distribution(shapes), entry))
    total = sum(r["n"] for r in results.values())
    value = sum(r["sql"][3] * r["n"] for r in results.values()) / total
    baseline = sum(r["plain"][3] * r["n"] for r in results.values()) / total
    lines.append(_line("all", distribution(every), None))
    lines.append(f"  pair_shapes: BENCH value = table recall@3 of the heuristic pairs (sql collection, "
                 f"{DEFAULT_OFFLINE_MODEL}) over all {total} questions, baseline = plain catalog DDL, same model; "
                 f"{dropped_total} pairs failed validation; {time.monotonic() - started:.0f} s")
    report("pair_shapes", value, "recall@3", baseline, value / baseline if baseline else float("inf"), *lines)
    return 0 if dropped_total == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
