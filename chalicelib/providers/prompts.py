"""The prompts sent to a language model, in Chinese or English after the business context's language."""
from __future__ import annotations

import json
from typing import Any

from chalicelib.pipeline.models import RepairRequest, TableDoc, TableMeta, Theme
from chalicelib.pipeline.schema_text import render_schema_text
from chalicelib.pipeline.text import is_chinese

MAX_SAMPLE_ROWS = 20
MAX_SAMPLE_VALUE_CHARS = 80


def _clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_SAMPLE_VALUE_CHARS:
        return value[:MAX_SAMPLE_VALUE_CHARS] + "…"
    return value


SYSTEM_PROMPTS = {
    "zh": "你是资深的 PostgreSQL 数据库专家和业务分析师。只输出一个 JSON 对象，不要输出任何其他文字。",
    "en": "You are a senior PostgreSQL database expert and business analyst. Reply with one JSON object only, "
          "no other text.",
}


def prompt_language(business_context: str) -> str:
    """"zh" when the business context is Chinese, else "en"."""
    return "zh" if is_chinese(business_context) else "en"


def comments_prompt(meta: TableMeta, samples: list[dict], business_context: str, lang: str) -> str:
    columns = []
    for col in meta.columns:
        line = f"- {col.name} ({col.data_type}{', primary key' if col.name in meta.primary_key else ''})"
        if col.comment:
            line += f" existing comment: {col.comment}"
        if col.enum_values:
            line += f" enum values: {', '.join(col.enum_values)}"
        columns.append(line)
    for fk in meta.foreign_keys:
        columns.append(f"- foreign key ({', '.join(fk.columns)}) -> {fk.ref_schema}.{fk.ref_table}")
    rows = "\n".join(
        json.dumps({k: _clip(v) for k, v in row.items()}, ensure_ascii=False, default=str)
        for row in samples[:MAX_SAMPLE_ROWS]
    ) or "(no rows)"
    shape = '{"table_comment": "...", "columns": {"column_name": "comment", ...}, "enum_candidates": ["column_name"]}'
    if lang == "zh":
        return (
            f"业务背景：{business_context}\n\n表：{meta.ref.display_name}\n现有表注释：{meta.comment or '无'}\n"
            f"字段：\n" + "\n".join(columns) + f"\n\n样例数据（最多 {MAX_SAMPLE_ROWS} 行）：\n{rows}\n\n"
            "请用简洁的中文为该表写一个表注释（中文名），并为每个字段写一个简短的中文注释；"
            "只使用上面列出的字段名，不要编造字段。enum_candidates 列出取值有限、像枚举的字段名。\n"
            f"输出格式：{shape}"
        )
    return (
        f"Business context: {business_context}\n\nTable: {meta.ref.display_name}\n"
        f"Existing table comment: {meta.comment or 'none'}\nColumns:\n" + "\n".join(columns)
        + f"\n\nSample rows (up to {MAX_SAMPLE_ROWS}):\n{rows}\n\n"
        "Write a short table comment and a short comment for every column, in English. Use only the column "
        "names listed above; do not invent columns. enum_candidates lists the columns that hold a small set of "
        f"values (enum-like).\nAnswer format: {shape}"
    )


def themes_prompt(docs: list[TableDoc], business_context: str, count: int, lang: str) -> str:
    schema = render_schema_text(docs)
    shape = ('{"themes": [{"topic_name": "...", "description": "...", "related_tables": ["schema.table"], '
             '"biz_entities": ["..."], "biz_metrics": ["..."]}]}')
    if lang == "zh":
        return (
            f"业务背景：{business_context}\n\n数据库表结构：\n{schema}\n\n"
            f"请从这些表中归纳 {count} 个适合做数据分析问答的业务主题。related_tables 只能使用上面出现的表名"
            "（schema.table），biz_entities 是业务实体，biz_metrics 是可计算的业务指标。\n"
            f"输出格式：{shape}"
        )
    return (
        f"Business context: {business_context}\n\nDatabase tables:\n{schema}\n\n"
        f"Identify {count} business themes suited to analytical questions over these tables. related_tables may "
        "only use table names shown above (schema.table); biz_entities are business entities, biz_metrics are "
        f"measurable metrics.\nAnswer format: {shape}"
    )


def pairs_prompt(theme: Theme, docs: list[TableDoc], business_context: str, count: int, lang: str) -> str:
    schema = render_schema_text(docs)
    shape = '{"pairs": [{"question": "...", "sql": "SELECT ...;"}]}'
    if lang == "zh":
        return (
            f"业务背景：{business_context}\n主题：{theme.topic_name}\n主题说明：{theme.description}\n"
            f"业务实体：{', '.join(theme.biz_entities)}\n业务指标：{', '.join(theme.biz_metrics)}\n\n"
            f"可用的表（只能使用这些表和字段）：\n{schema}\n\n"
            f"请生成 {count} 个不同的中文业务问题及对应的 PostgreSQL 查询（覆盖趋势、对比、排名 Top-N、汇总、明细）。"
            "每个问题和 SQL 都是单行；SQL 只能是 SELECT（或 WITH … SELECT），使用 PostgreSQL 语法，以分号结尾；"
            "只使用上面列出的表和字段；有 delete_ts 字段的表加上 delete_ts is null 条件。\n"
            f"输出格式：{shape}"
        )
    return (
        f"Business context: {business_context}\nTheme: {theme.topic_name}\nTheme description: {theme.description}\n"
        f"Entities: {', '.join(theme.biz_entities)}\nMetrics: {', '.join(theme.biz_metrics)}\n\n"
        f"Available tables (use only these tables and columns):\n{schema}\n\n"
        f"Write {count} distinct business questions in English with their PostgreSQL queries (cover trends, "
        "comparisons, top-N rankings, aggregates, details). Question and SQL each on one line; the SQL is a single "
        "SELECT (or WITH … SELECT) in PostgreSQL syntax ending with ';', using only the tables and columns above; "
        f"add `delete_ts is null` for tables that have a delete_ts column.\nAnswer format: {shape}"
    )


def repair_prompt(requests: list[RepairRequest], docs: list[TableDoc], lang: str) -> str:
    items = json.dumps(
        [{"index": r.index, "question": r.question, "sql": r.sql, "error": r.error} for r in requests],
        ensure_ascii=False, indent=1,
    )
    shape = '{"repairs": [{"index": 0, "sql": "SELECT ...;"}]}'
    if lang == "zh":
        return (
            f"数据库表结构：\n{render_schema_text(docs)}\n\n下面这些 SQL 在 PostgreSQL 上执行 EXPLAIN 时报错。"
            "请根据错误信息和表结构逐个修复，保持问题的原意；只使用上面的表和字段；SQL 单行、以分号结尾、只能是 "
            f"SELECT/WITH。无法修复的不要输出。\n{items}\n\n输出格式：{shape}"
        )
    return (
        f"Database tables:\n{render_schema_text(docs)}\n\nThese SQL statements fail EXPLAIN on PostgreSQL. Fix each "
        "one using the error and the schema, keeping the question's meaning; only the tables and columns above; "
        "one line, ending with ';', SELECT/WITH only. Leave out what you cannot fix.\n"
        f"{items}\n\nAnswer format: {shape}"
    )


def reask_text(error: str, lang: str) -> str:
    if lang == "zh":
        return f"你的回答无法使用：{error}。请重新回答，只输出符合要求格式的 JSON 对象，不要任何其他文字。"
    return f"Your answer could not be used: {error}. Answer again with only the JSON object in the required " \
           "format, no other text."
