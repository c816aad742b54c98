"""FROZEN BASELINE, not product code: the prompt builders as they were before issue #14 item 2 (commit 0ec4b74,
chalicelib/providers/prompts.py verbatim apart from this docstring and the imports of the schema text, which come
from the frozen copy in benchmarks/prompts_before_schema.py). benchmarks/bench_prompt_tokens.py measures today's
prompts against these in the same run. Do not edit: a change here moves the baseline."""
from __future__ import annotations

import json
from typing import Any

from benchmarks.prompts_before_schema import fit_schema_text, render_schema_text
from chalicelib.pipeline.models import RepairRequest, TableDoc, TableMeta, Theme
from chalicelib.pipeline.prompt_budget import (
    MESSAGE_OVERHEAD_TOKENS,
    PromptBudget,
    chunk_lines,
    clip_to_tokens,
    clustered,
    estimate_tokens,
    select_repair_docs,
    summary_line,
)
from chalicelib.pipeline.text import is_chinese

MAX_SAMPLE_ROWS = 20
MAX_SAMPLE_VALUE_CHARS = 80
MAX_ENUM_VALUES_SHOWN = 20
CONTEXT_MAX_TOKENS = 1000  # the business context, as the user wrote it, cut to this
THEME_FIELD_MAX_TOKENS = 600  # a theme's description, entities and metrics in the pairs prompt
MERGE_TABLES_SHOWN = 30  # of a candidate theme's tables, in the merge prompt
REPAIR_ERROR_MAX_CHARS = 600


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


def room_for_user_prompt(budget: PromptBudget, lang: str) -> int:
    """Tokens the user message may take beside the system prompt."""
    return budget.prompt_tokens - estimate_tokens(SYSTEM_PROMPTS[lang]) - 2 * MESSAGE_OVERHEAD_TOKENS


def _context(business_context: str) -> str:
    return clip_to_tokens(" ".join((business_context or "").split()), CONTEXT_MAX_TOKENS)


# -- column comments --------------------------------------------------------------------------------------------


def _column_lines(meta: TableMeta) -> list[tuple[str | None, str]]:
    """(column name, or None for a foreign key, and its line) of the comments prompt."""
    lines: list[tuple[str | None, str]] = []
    for col in meta.columns:
        line = f"- {col.name} ({col.data_type}{', primary key' if col.name in meta.primary_key else ''})"
        if col.comment:
            line += f" existing comment: {clip_to_tokens(col.comment, 200)}"
        if col.enum_values:
            line += f" enum values: {', '.join(col.enum_values[:MAX_ENUM_VALUES_SHOWN])}"
        lines.append((col.name, line))
    for fk in meta.relationships:
        lines.append((None, f"- foreign key ({', '.join(fk.columns)}) -> {fk.ref_schema}.{fk.ref_table}"))
    return lines


def _pack(lines: list[tuple[str | None, str]], tokens: int) -> list[list[tuple[str | None, str]]]:
    """The lines in order, in groups of at most `tokens` (a longer line is cut to fit alone): chunk_lines keeps
    the order and puts every line in exactly one group, so each keeps its column name."""
    names = iter([name for name, _ in lines])
    return [[(next(names), line) for line in chunk] for chunk in chunk_lines([line for _, line in lines], tokens)]


def _comments_text(meta: TableMeta, context: str, columns: list[str], rows: str, part: str, lang: str) -> str:
    shape = '{"table_comment": "...", "columns": {"column_name": "comment", ...}, "enum_candidates": ["column_name"]}'
    if lang == "zh":
        return (
            f"业务背景：{context}\n\n表：{meta.ref.display_name}\n现有表注释：{meta.comment or '无'}\n"
            f"字段{part}：\n" + "\n".join(columns) + f"\n\n样例数据（最多 {MAX_SAMPLE_ROWS} 行）：\n{rows}\n\n"
            "请用简洁的中文为该表写一个表注释（中文名），并为每个字段写一个简短的中文注释；"
            "只使用上面列出的字段名，不要编造字段。enum_candidates 列出取值有限、像枚举的字段名。\n"
            f"输出格式：{shape}"
        )
    return (
        f"Business context: {context}\n\nTable: {meta.ref.display_name}\n"
        f"Existing table comment: {meta.comment or 'none'}\nColumns{part}:\n" + "\n".join(columns)
        + f"\n\nSample rows (up to {MAX_SAMPLE_ROWS}):\n{rows}\n\n"
        "Write a short table comment and a short comment for every column, in English. Use only the column "
        "names listed above; do not invent columns. enum_candidates lists the columns that hold a small set of "
        f"values (enum-like).\nAnswer format: {shape}"
    )


def comments_prompts(meta: TableMeta, samples: list[dict], business_context: str, lang: str,
                     budget: PromptBudget) -> list[str]:
    """One prompt per table; a table whose column list alone would not fit is asked in parts of its columns
    (each with the sample values of its own columns). Sample rows are added while they fit."""
    context = _context(business_context)
    room = room_for_user_prompt(budget, lang)
    lines = _column_lines(meta)
    fixed = estimate_tokens(_comments_text(meta, context, [], "(no rows)", " (part 10/10)", lang))
    everything = sum(estimate_tokens(line) + 1 for _, line in lines)
    # Split columns get up to three quarters of the room: the rest is for their sample values.
    groups = [lines] if fixed + everything <= room else _pack(lines, (room - fixed) * 3 // 4)
    prompts = []
    for number, group in enumerate(groups, start=1):
        names = {name for name, _ in group if name is not None}
        texts = [line for _, line in group]
        used = fixed + sum(estimate_tokens(line) + 1 for line in texts)
        rows: list[str] = []
        for row in samples[:MAX_SAMPLE_ROWS]:
            shown = {k: _clip(v) for k, v in row.items() if len(groups) == 1 or k in names}
            text = json.dumps(shown, ensure_ascii=False, default=str)
            cost = estimate_tokens(text) + 1
            if used + cost > room:
                break
            rows.append(text)
            used += cost
        part = f" (part {number}/{len(groups)})" if len(groups) > 1 else ""
        prompts.append(_comments_text(meta, context, texts, "\n".join(rows) or "(no rows)", part, lang))
    return prompts


# -- themes -----------------------------------------------------------------------------------------------------


def _themes_text(schema: str, heading: str, context: str, count: int, lang: str) -> str:
    shape = ('{"themes": [{"topic_name": "...", "description": "...", "related_tables": ["schema.table"], '
             '"biz_entities": ["..."], "biz_metrics": ["..."]}]}')
    if lang == "zh":
        return (
            f"业务背景：{context}\n\n{heading}：\n{schema}\n\n"
            f"请从这些表中归纳 {count} 个适合做数据分析问答的业务主题。related_tables 只能使用上面出现的表名"
            "（schema.table），biz_entities 是业务实体，biz_metrics 是可计算的业务指标。\n"
            f"输出格式：{shape}"
        )
    return (
        f"Business context: {context}\n\n{heading}:\n{schema}\n\n"
        f"Identify {count} business themes suited to analytical questions over these tables. related_tables may "
        "only use table names shown above (schema.table); biz_entities are business entities, biz_metrics are "
        f"measurable metrics.\nAnswer format: {shape}"
    )


_HEADINGS = {
    "full": {"zh": "数据库表结构", "en": "Database tables"},
    "summary": {"zh": "数据库表摘要（每行：表名 -- 表注释 -> 外键引用的表）",
                "en": "Database tables, one per line (table -- comment -> tables its foreign keys reference)"},
    "part": {"zh": "数据库表摘要，第 {n}/{total} 部分（每行：表名 -- 表注释 -> 外键引用的表）",
             "en": "Database tables, part {n} of {total}, one per line (table -- comment -> tables its foreign keys "
                   "reference)"},
}


def theme_prompts(docs: list[TableDoc], business_context: str, count: int, lang: str,
                  budget: PromptBudget) -> list[str]:
    """The theme extraction prompt: the full schema text when it fits; else a compact summary (one line per
    table: name, comment, foreign-key targets); when even that does not fit, one prompt per chunk of the summary
    (tables of one foreign-key cluster kept together), whose themes `merge_themes_prompt` then merges."""
    context = _context(business_context)
    room = room_for_user_prompt(budget, lang)
    fixed = estimate_tokens(_themes_text("", _HEADINGS["part"][lang].format(n=100, total=100), context, count, lang))
    full_cost = 0
    for doc in docs:
        full_cost += estimate_tokens(render_schema_text([doc])) + 1
        if fixed + full_cost > room:
            break
    else:
        return [_themes_text(render_schema_text(docs), _HEADINGS["full"][lang], context, count, lang)]
    lines = [summary_line(doc) for doc in clustered(docs)]
    chunks = chunk_lines(lines, room - fixed)
    if len(chunks) == 1:
        return [_themes_text("\n".join(lines), _HEADINGS["summary"][lang], context, count, lang)]
    return [_themes_text("\n".join(chunk), _HEADINGS["part"][lang].format(n=n, total=len(chunks)), context, count,
                         lang) for n, chunk in enumerate(chunks, start=1)]


def _candidate_line(index: int, theme: Theme) -> str:
    tables = theme.related_tables[:MERGE_TABLES_SHOWN]
    return json.dumps({"index": index, "topic_name": clip_to_tokens(theme.topic_name, 60),
                       "description": clip_to_tokens(theme.description, 120), "related_tables": tables,
                       "biz_entities": theme.biz_entities[:8], "biz_metrics": theme.biz_metrics[:8]},
                      ensure_ascii=False)


def _merge_text(candidates: list[str], context: str, count: int, lang: str) -> str:
    shape = ('{"themes": [{"topic_name": "...", "description": "...", "related_tables": ["schema.table"], '
             '"biz_entities": ["..."], "biz_metrics": ["..."]}]}')
    items = "\n".join(candidates)
    if lang == "zh":
        return (
            f"业务背景：{context}\n\n下面是从数据库不同部分归纳出的候选业务主题（每行一个）：\n{items}\n\n"
            f"请合并、取舍这些候选，给出 {count} 个覆盖面最好、适合做数据分析问答的业务主题。related_tables 只能使用"
            "候选主题中出现的表名（schema.table），biz_entities 是业务实体，biz_metrics 是可计算的业务指标。\n"
            f"输出格式：{shape}"
        )
    return (
        f"Business context: {context}\n\nCandidate business themes found in different parts of the database, one "
        f"per line:\n{items}\n\nMerge these candidates and keep the {count} business themes that together cover "
        "the database best for analytical questions. related_tables may only use table names of the candidates "
        "(schema.table); biz_entities are business entities, biz_metrics are measurable metrics.\n"
        f"Answer format: {shape}"
    )


def merge_theme_groups(candidates: list[Theme], business_context: str, count: int, lang: str,
                       budget: PromptBudget) -> list[tuple[list[Theme], str]]:
    """The candidates packed into groups whose merge prompt fits, each with that prompt."""
    context = _context(business_context)
    room = room_for_user_prompt(budget, lang) - estimate_tokens(_merge_text([], context, count, lang))
    lines = [_candidate_line(i, theme) for i, theme in enumerate(candidates)]
    groups: list[tuple[list[Theme], list[str]]] = [([], [])]
    used = 0
    for theme, line in zip(candidates, lines, strict=True):
        cost = estimate_tokens(line) + 1
        if groups[-1][0] and used + cost > room:
            groups.append(([], []))
            used = 0
        groups[-1][0].append(theme)
        groups[-1][1].append(clip_to_tokens(line, room - 1))
        used += cost
    return [(themes, _merge_text(text, context, count, lang)) for themes, text in groups]


# -- pairs ------------------------------------------------------------------------------------------------------


def _pairs_text(theme: Theme, schema: str, context: str, count: int, lang: str) -> str:
    shape = '{"pairs": [{"question": "...", "sql": "SELECT ...;"}]}'
    clip = THEME_FIELD_MAX_TOKENS
    topic = clip_to_tokens(theme.topic_name, 100)
    description = clip_to_tokens(theme.description, clip)
    entities = clip_to_tokens(", ".join(theme.biz_entities), clip // 2)
    metrics = clip_to_tokens(", ".join(theme.biz_metrics), clip // 2)
    if lang == "zh":
        return (
            f"业务背景：{context}\n主题：{topic}\n主题说明：{description}\n"
            f"业务实体：{entities}\n业务指标：{metrics}\n\n"
            f"可用的表（只能使用这些表和字段）：\n{schema}\n\n"
            f"请生成 {count} 个不同的中文业务问题及对应的 PostgreSQL 查询（覆盖趋势、对比、排名 Top-N、汇总、明细）。"
            "每个问题和 SQL 都是单行；SQL 只能是 SELECT（或 WITH … SELECT），使用 PostgreSQL 语法，以分号结尾；"
            "只使用上面列出的表和字段；有 delete_ts 字段的表加上 delete_ts is null 条件。\n"
            f"输出格式：{shape}"
        )
    return (
        f"Business context: {context}\nTheme: {topic}\nTheme description: {description}\n"
        f"Entities: {entities}\nMetrics: {metrics}\n\n"
        f"Available tables (use only these tables and columns):\n{schema}\n\n"
        f"Write {count} distinct business questions in English with their PostgreSQL queries (cover trends, "
        "comparisons, top-N rankings, aggregates, details). Question and SQL each on one line; the SQL is a single "
        "SELECT (or WITH … SELECT) in PostgreSQL syntax ending with ';', using only the tables and columns above; "
        f"add `delete_ts is null` for tables that have a delete_ts column.\nAnswer format: {shape}"
    )


def pairs_prompt(theme: Theme, docs: list[TableDoc], business_context: str, count: int, lang: str,
                 budget: PromptBudget) -> str:
    """The theme's tables (`docs`, in the theme's order) in full while they fit, then leaner, then left out."""
    context = _context(business_context)
    room = room_for_user_prompt(budget, lang) - estimate_tokens(_pairs_text(theme, "", context, count, lang))
    schema, _shown = fit_schema_text(docs, room)
    return _pairs_text(theme, schema, context, count, lang)


# -- repairs ----------------------------------------------------------------------------------------------------


def _repair_items(requests: list[RepairRequest]) -> str:
    return json.dumps(
        [{"index": r.index, "question": r.question, "sql": r.sql, "error": r.error[:REPAIR_ERROR_MAX_CHARS]}
         for r in requests],
        ensure_ascii=False, indent=1,
    )


def _repair_text(schema: str, items: str, lang: str) -> str:
    shape = '{"repairs": [{"index": 0, "sql": "SELECT ...;"}]}'
    if lang == "zh":
        return (
            f"数据库表结构：\n{schema}\n\n下面这些 SQL 在 PostgreSQL 上执行 EXPLAIN 时报错。"
            "请根据错误信息和表结构逐个修复，保持问题的原意；只使用上面的表和字段；SQL 单行、以分号结尾、只能是 "
            f"SELECT/WITH。无法修复的不要输出。\n{items}\n\n输出格式：{shape}"
        )
    return (
        f"Database tables:\n{schema}\n\nThese SQL statements fail EXPLAIN on PostgreSQL. Fix each "
        "one using the error and the schema, keeping the question's meaning; only the tables and columns above; "
        "one line, ending with ';', SELECT/WITH only. Leave out what you cannot fix.\n"
        f"{items}\n\nAnswer format: {shape}"
    )


def repair_prompts(requests: list[RepairRequest], docs: list[TableDoc], lang: str, budget: PromptBudget
                   ) -> tuple[list[tuple[list[RepairRequest], str]], list[RepairRequest]]:
    """([(requests, prompt)], requests left out): each prompt shows only the tables its failing queries name (or
    the closest known names); a batch whose statements take more than half the room is split; a single statement
    too long to ask about at all is left out (returned second, for the caller to report)."""
    room = room_for_user_prompt(budget, lang)
    items = _repair_items(requests)
    fixed = estimate_tokens(_repair_text("", items, lang))
    if fixed > room // 2 and len(requests) > 1:
        half = len(requests) // 2
        first, skipped_first = repair_prompts(requests[:half], docs, lang, budget)
        second, skipped_second = repair_prompts(requests[half:], docs, lang, budget)
        return first + second, skipped_first + skipped_second
    if fixed > room:
        return [], list(requests)
    schema, _shown = fit_schema_text(select_repair_docs(requests, docs), room - fixed)
    return [(list(requests), _repair_text(schema, items, lang))], []


def reask_text(error: str, lang: str) -> str:
    if lang == "zh":
        return f"你的回答无法使用：{error}。请重新回答，只输出符合要求格式的 JSON 对象，不要任何其他文字。"
    return f"Your answer could not be used: {error}. Answer again with only the JSON object in the required " \
           "format, no other text."
