"""The team's own retrieval question sets (tests/fixtures/questions/*.jsonl), written by hand from the schemas and
the data, never from the product's output.

Each line: {"question", "sql" (the gold query), "tables" (the tables the answer needs)}. `tables_read` is what a
query reads, by PostgreSQL's own parser (pglast): every table named in FROM/JOIN/subqueries, CTE names excluded,
`public.` dropped (other schemas kept as `schema.name`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pglast import parser

from chalicelib.pipeline.sqltext import referenced_tables, walk_tree

QUESTIONS_DIR = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "questions"
REALDBS_DIR = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "realdbs"

# database -> (question file, business context given to the task, how the database is built)
DATABASES: dict[str, tuple[str, str]] = {
    "highway_demo": ("highway_demo.zh.jsonl", "高速公路服务区管理系统"),
    "northwind": ("northwind.en.jsonl", "Northwind Traders: an import-export food wholesaler"),
    "happiness_index": ("happiness_index.en.jsonl", "World Happiness Report 2019"),
    "periodic_table": ("periodic_table.en.jsonl", "The periodic table of the chemical elements"),
}


@dataclass(frozen=True)
class Question:
    question: str
    sql: str
    tables: tuple[str, ...]


def load_questions(database: str) -> list[Question]:
    """The question set of one database; a malformed line is an error naming the file and line."""
    path = QUESTIONS_DIR / DATABASES[database][0]
    out: list[Question] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            out.append(Question(str(item["question"]), str(item["sql"]), tuple(item["tables"])))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path.name}:{number}: not a question line ({exc})") from exc
    return out


def table_key(schema: str | None, name: str) -> str:
    """How a table is named in the question files and the benchmark: bare in public, `schema.name` elsewhere."""
    return name if schema in (None, "", "public") else f"{schema}.{name}"


def tables_read(sql: str) -> set[str]:
    """The tables `sql` reads (pglast parse tree: RangeVar nodes, CTE names excluded)."""
    return {table_key(schema, name) for schema, name in referenced_tables(sql)}


def create_table_names(ddl: str) -> set[str]:
    """The tables a DDL document creates (`create table` / `create view`), by the parser."""
    tree = json.loads(parser.parse_sql_json(ddl))
    names: set[str] = set()
    for key, value in walk_tree(tree):
        if key in ("CreateStmt", "ViewStmt", "CreateTableAsStmt"):
            rel = value.get("relation") or value.get("view") or (value.get("into") or {}).get("rel") or {}
            if rel:
                names.add(table_key(rel.get("schemaname"), rel["relname"]))
    return names
