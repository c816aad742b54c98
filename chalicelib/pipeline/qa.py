"""qa_generation: business themes, Question→SQL pairs per theme, dedupe, and the metadata files.

The provider (LLM or heuristic) proposes; this module checks what it proposes against the real tables and
normalises it (single-line SQL ending with one ';', only SELECT/WITH), so every provider is held to one contract.
"""
from __future__ import annotations

import json
import logging
import re

from chalicelib.pipeline import sqltext
from chalicelib.pipeline.models import QAPair, TableDoc, Theme
from chalicelib.pipeline.ports import LLMProvider
from chalicelib.pipeline.schema_text import find_doc
from chalicelib.pipeline.sqltext import check_read_only
from chalicelib.pipeline.text import collapse_whitespace, is_chinese, is_select_sql

logger = logging.getLogger(__name__)

TOPIC_NAME_MAX = 100  # metadata.topic_name is varchar(100)

METADATA_DDL = (
    "CREATE TABLE metadata (\n"
    "  id serial primary key,\n"
    "  topic_name varchar(100) not null,\n"
    "  description text,\n"
    "  related_tables text[],\n"
    "  biz_entities text[],\n"
    "  biz_metrics text[],\n"
    "  created_at timestamp default now()\n"
    ");"
)


# -- themes ---------------------------------------------------------------------------------------------------


def extract_themes(llm: LLMProvider, docs: list[TableDoc], business_context: str, count: int) -> list[Theme]:
    """Ask the provider for `count` themes; keep only real tables (as schema.table); drop themes left empty."""
    proposed = llm.extract_themes(docs, business_context, count)
    themes: list[Theme] = []
    for theme in proposed:
        tables: list[str] = []
        for name in theme.related_tables:
            doc = find_doc(name, docs)
            if doc is None:
                logger.warning("theme names an unknown table; dropped", extra={"theme": theme.topic_name,
                                                                               "table": name})
                continue
            if doc.meta.ref.display_name not in tables:
                tables.append(doc.meta.ref.display_name)
        topic = collapse_whitespace(theme.topic_name)
        if not tables or not topic:
            logger.warning("theme without a known table dropped", extra={"theme": theme.topic_name})
            continue
        themes.append(Theme(
            topic_name=topic,
            description=collapse_whitespace(theme.description),
            related_tables=tables,
            biz_entities=[collapse_whitespace(e) for e in theme.biz_entities if collapse_whitespace(e)],
            biz_metrics=[collapse_whitespace(m) for m in theme.biz_metrics if collapse_whitespace(m)],
        ))
    return themes[:count]


# -- pairs ----------------------------------------------------------------------------------------------------


def normalize_sql(sql: str) -> str | None:
    """One line (line breaks inside literals too), comments removed, one trailing ';'; None when empty or not a
    SELECT/WITH."""
    body = sqltext.normalize_sql(sql or "", flatten_literals=True).removesuffix(";")
    if not body or not is_select_sql(body):
        return None
    return body + ";"


def sql_dedupe_key(sql: str) -> str:
    """Equal keys mean the same query: case outside quotes, whitespace and ';' do not count."""
    return sqltext.dedupe_key(sql)


def normalize_pair(pair: QAPair) -> QAPair | None:
    question = collapse_whitespace(pair.question)
    sql = normalize_sql(pair.sql)
    if not question or sql is None:
        return None
    return QAPair(question=question, sql=sql)


def generate_theme_pairs(llm: LLMProvider, theme: Theme, docs: list[TableDoc], business_context: str,
                         count: int) -> list[QAPair]:
    """The provider's pairs for one theme, normalised; unusable ones (empty, not SELECT/WITH) dropped.

    A statement that writes (a data-modifying CTE, a second statement, SELECT … INTO, locking clauses) is dropped
    here too: the pair file is final when sql_validation is disabled, and it feeds the training data.
    """
    pairs = []
    for pair in llm.generate_pairs(theme, docs, business_context, count):
        normalised = normalize_pair(pair)
        reason = "empty or not a SELECT" if normalised is None else check_read_only(normalised.sql)
        if reason:
            logger.warning("pair dropped: {reason}",
                           extra={"reason": reason, "theme": theme.topic_name, "sql": pair.sql[:200]})
            continue
        pairs.append(normalised)
    return pairs


def merge_pairs(groups: list[list[QAPair]]) -> list[QAPair]:
    """All groups in order; a pair whose normalised SQL was seen before is dropped."""
    seen: set[str] = set()
    merged = []
    for group in groups:
        for pair in group:
            key = sql_dedupe_key(pair.sql)
            if key in seen:
                continue
            seen.add(key)
            merged.append(pair)
    return merged


def pair_file_name(db_name: str, ts: str) -> str:
    """qs_{db}_{YYYYmmdd_HHMMSS}_pair.json (the database name made safe for a file name)."""
    safe = re.sub(r"[^\w.\-]", "_", db_name).strip(".") or "db"
    return f"qs_{safe}_{ts}_pair.json"


def render_pairs_json(pairs: list[QAPair]) -> str:
    return json.dumps([p.to_dict() for p in pairs], ensure_ascii=False, indent=2) + "\n"


# -- metadata files -------------------------------------------------------------------------------------------


def _sql_text(value: str) -> str:
    return "'" + value.replace("\x00", "").replace("'", "''") + "'"


def _sql_array(values: list[str]) -> str:
    return "ARRAY[" + ", ".join(_sql_text(v) for v in values) + "]::text[]"


def render_metadata_txt(themes: list[Theme], db_name: str) -> str:
    """`CREATE TABLE metadata` plus one INSERT per theme; executable by PostgreSQL as written."""
    lines = [
        f"-- Business themes of database {collapse_whitespace(db_name)}",
        f"-- {len(themes)} themes",
        METADATA_DDL,
        "",
    ]
    columns = "topic_name, description, related_tables, biz_entities, biz_metrics"
    for theme in themes:
        # Values are escaped literals (quotes doubled, NUL removed): the file is meant to be run by psql.
        values = ", ".join([
            _sql_text(collapse_whitespace(theme.topic_name)[:TOPIC_NAME_MAX]),
            _sql_text(collapse_whitespace(theme.description)),
            _sql_array(theme.related_tables),
            _sql_array(theme.biz_entities),
            _sql_array(theme.biz_metrics),
        ])
        lines.append(" ".join(["INSERT INTO metadata", f"({columns})", "VALUES", f"({values});"]))
    return "\n".join(lines) + "\n"


def render_metadata_detail_md(themes: list[Theme], docs: list[TableDoc]) -> str:
    """The metadata table's fields and every theme with its tables (and their comments), entities and metrics."""
    zh = any(is_chinese(t.topic_name) or is_chinese(t.description) for t in themes)

    def table_line(name: str) -> str:
        doc = find_doc(name, docs)
        comment = (doc.table_comment or doc.meta.comment) if doc else None
        if not comment:
            return f"  - `{name}`"
        return f"  - `{name}`" + (f"（{collapse_whitespace(comment)}）" if zh else f" ({collapse_whitespace(comment)})")

    if zh:
        out = [
            "## metadata（存储分析主题元数据）",
            "",
            "`metadata` 表记录从业务数据库中归纳出的分析主题，每个主题一行。",
            "",
            "字段列表：",
            "- id (serial) - 主键ID [主键, 非空]",
            "- topic_name (varchar(100)) - 业务主题名称 [非空]",
            "- description (text) - 业务主题说明",
            "- related_tables (text[]) - 涉及的数据表",
            "- biz_entities (text[]) - 主要业务实体",
            "- biz_metrics (text[]) - 主要业务指标",
            "- created_at (timestamp) - 插入时间",
            "",
            f"## 主题列表（共 {len(themes)} 个）",
        ]
        labels = ("说明", "涉及的表", "业务实体", "业务指标")
    else:
        out = [
            "## metadata (business themes)",
            "",
            "The `metadata` table holds the analysis themes found in the business database, one row per theme.",
            "",
            "Fields:",
            "- id (serial) - primary key [primary key, not null]",
            "- topic_name (varchar(100)) - theme name [not null]",
            "- description (text) - what the theme covers",
            "- related_tables (text[]) - tables involved",
            "- biz_entities (text[]) - main business entities",
            "- biz_metrics (text[]) - main business metrics",
            "- created_at (timestamp) - insertion time",
            "",
            f"## Themes ({len(themes)})",
        ]
        labels = ("Description", "Tables", "Entities", "Metrics")
    for number, theme in enumerate(themes, start=1):
        out += [
            "",
            f"### {number}. {collapse_whitespace(theme.topic_name)}",
            "",
            f"- {labels[0]}: {collapse_whitespace(theme.description)}",
            f"- {labels[1]}:",
            *[table_line(t) for t in theme.related_tables],
            f"- {labels[2]}: {', '.join(theme.biz_entities)}",
            f"- {labels[3]}: {', '.join(theme.biz_metrics)}",
        ]
    return "\n".join(out) + "\n"
