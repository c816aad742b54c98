"""The prompts sent to a language model, in Chinese or English after the business context's language, each built
to fit the context budget (chalicelib.pipeline.prompt_budget): what does not fit is left out, cut, or asked in
parts (a very wide table's columns, a schema summary too long for one theme prompt, a large repair batch)."""
from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from chalicelib.pipeline.models import RepairRequest, TableDoc, TableMeta, Theme
from chalicelib.pipeline.profiles import is_obvious_id
from chalicelib.pipeline.prompt_budget import (
    PromptBudget,
    chunk_lines,
    clip_to_tokens,
    clustered,
    estimate_tokens,
    fit_schema_text,
    select_repair_docs,
    summary_line,
)
from chalicelib.pipeline.schema_text import render_schema_text
from chalicelib.providers.prompts_common import (  # noqa: F401  (re-exported: the providers' entry points)
    ANSWER_KEYS,
    ANSWER_SCHEMAS,
    SYSTEM_PROMPTS,
    answer_format,
    context_text,
    prompt_language,
    room_for_user_prompt,
)
from chalicelib.providers.prompts_pairs import pairs_prompt  # noqa: F401

MAX_ENUM_VALUES_SHOWN = 20
MERGE_TABLES_SHOWN = 30  # of a candidate theme's tables, in the merge prompt
REPAIR_ERROR_MAX_CHARS = 600


# -- column comments --------------------------------------------------------------------------------------------

COMMENT_VALUES_SHOWN = 5  # distinct values per column in the comments prompt, taken from the sampled rows
COMMENT_VALUE_CHARS = 40
COMMENTED_CONTEXT_TOKENS = 400  # the line naming the columns that already have a database comment


def _literal(value: str) -> str:
    text = value if len(value) <= COMMENT_VALUE_CHARS else value[:COMMENT_VALUE_CHARS - 1] + "…"
    return "'" + " ".join(text.split()).replace("'", "''") + "'"


def distinct_values(samples: list[dict], column: str, limit: int = COMMENT_VALUES_SHOWN) -> list[str]:
    """The first `limit` distinct non-empty values of `column` in the sampled rows, as strings."""
    seen: dict[str, None] = {}
    for row in samples:
        value = row.get(column)
        if value is not None and str(value).strip() and len(seen) < limit:
            seen.setdefault(str(value), None)
    return list(seen)


def _column_lines(meta: TableMeta, samples: list[dict]) -> list[tuple[str | None, str]]:
    """(column name, or None for a relationship, and its line) of the comments prompt: the columns without a
    database comment, each with its distinct sampled values (an identifier: one, to show its form); then the
    relationships."""
    lines: list[tuple[str | None, str]] = []
    for col in meta.columns:
        if col.comment:
            continue
        line = f"- {col.name} ({col.data_type}{', primary key' if col.name in meta.primary_key else ''})"
        if col.enum_values:
            line += f": {', '.join(_literal(v) for v in col.enum_values[:MAX_ENUM_VALUES_SHOWN])}"
        elif values := distinct_values(samples, col.name, 1 if is_obvious_id(meta, col) else COMMENT_VALUES_SHOWN):
            line += ": " + ", ".join(_literal(v) for v in values)
        lines.append((col.name, line))
    for fk in meta.relationships:
        lines.append((None, f"- {'inferred ' if fk.inferred else ''}foreign key ({', '.join(fk.columns)}) -> "
                            f"{fk.ref_schema}.{fk.ref_table}"))
    return lines


def _commented_line(meta: TableMeta, lang: str) -> str:
    """The columns that already have a database comment, `name（comment）`, cut to COMMENTED_CONTEXT_TOKENS."""
    items = [f"{col.name}（{clip_to_tokens(' '.join(col.comment.split()), 24)}）" if lang == "zh"
             else f"{col.name} ({clip_to_tokens(' '.join(col.comment.split()), 24)})"
             for col in meta.columns if col.comment]
    return clip_to_tokens(("、" if lang == "zh" else ", ").join(items), COMMENTED_CONTEXT_TOKENS) if items else ""


def _comments_text(meta: TableMeta, context: str, columns: list[str], commented: str, part: str, lang: str,
                   asked: bool = True) -> str:
    """`asked`: the lines include columns to comment (else only the table comment is asked)."""
    if lang == "zh":
        known = f"已有数据库注释的字段（无需再写）：{commented}\n" if commented else ""
        heading = f"需要写注释的字段{part}（字段名 (类型): 样例中的不同取值）" if asked else "关联"
        listing = f"{heading}：\n" + "\n".join(columns) + "\n" if columns else ""
        table_ask = "表已有注释，table_comment 填 null" if meta.comment else "写一个表注释（简洁的中文名）"
        column_ask = ("，并为上面“需要写注释的字段”各写一个简短的中文注释；只使用列出的字段名，不要编造字段"
                      if asked else "；所有字段都已有注释，columns 填 {}")
        return (
            f"业务背景：{context}\n\n表：{meta.ref.display_name}\n现有表注释：{meta.comment or '无'}\n{known}"
            f"{listing}\n请{table_ask}{column_ask}。enum_candidates 列出取值有限、像枚举的字段名。\n"
            + answer_format("comments", lang)
        )
    known = f"Columns that already have a database comment (do not comment them): {commented}\n" if commented else ""
    heading = f"Columns to comment{part} (name (type): distinct values seen in sample rows)" if asked \
        else "Relationships"
    listing = f"{heading}:\n" + "\n".join(columns) + "\n" if columns else ""
    table_ask = ("The table already has a comment: table_comment is null" if meta.comment
                 else "Write a short table comment")
    column_ask = ("; write a short comment for every column listed under 'Columns to comment', in English, using "
                  "only those names (do not invent columns)" if asked
                  else "; every column already has a comment: columns is {}")
    return (
        f"Business context: {context}\n\nTable: {meta.ref.display_name}\n"
        f"Existing table comment: {meta.comment or 'none'}\n{known}{listing}\n{table_ask}{column_ask}. "
        "enum_candidates lists the columns that hold a small set of values (enum-like).\n"
        + answer_format("comments", lang)
    )


def _pack(lines: list[tuple[str | None, str]], tokens: int) -> list[list[tuple[str | None, str]]]:
    """The lines in order, in groups of at most `tokens` (a longer line is cut to fit alone): chunk_lines keeps
    the order and puts every line in exactly one group, so each keeps its column name."""
    names = iter([name for name, _ in lines])
    return [[(next(names), line) for line in chunk] for chunk in chunk_lines([line for _, line in lines], tokens)]


def comments_prompts(meta: TableMeta, samples: list[dict], business_context: str, lang: str,
                     budget: PromptBudget) -> list[str]:
    """One prompt per table, asking only for what the database does not already say: the columns without a
    database comment (each with its distinct sampled values, never whole rows) and the table comment when it has
    none; the commented columns are named, with their comments, as context. A table whose column list would not
    fit is asked in parts of its columns."""
    context = context_text(business_context)
    room = room_for_user_prompt(budget, lang)
    lines = _column_lines(meta, samples)
    commented = _commented_line(meta, lang)
    fixed = estimate_tokens(_comments_text(meta, context, ["- x"], commented, " (part 10/10)", lang))
    everything = sum(estimate_tokens(line) + 1 for _, line in lines)
    groups = [lines] if fixed + everything <= room else _pack(lines, room - fixed)
    prompts = []
    for number, group in enumerate(groups, start=1):
        part = f" (part {number}/{len(groups)})" if len(groups) > 1 else ""
        asked = any(name is not None for name, _ in group)
        prompts.append(_comments_text(meta, context, [line for _, line in group], commented, part, lang, asked))
    return prompts


# -- themes -----------------------------------------------------------------------------------------------------


def _themes_text(schema: str, heading: str, context: str, count: int, lang: str) -> str:
    if lang == "zh":
        return (
            f"业务背景：{context}\n\n{heading}：\n{schema}\n\n"
            f"请从这些表中归纳 {count} 个适合做数据分析问答的业务主题。字段后的 e.g. 是真实取值，range 是数据的最小值与"
            "最大值。主题尽量包含通过外键或推断关联相连的多张表（便于多表关联分析）。related_tables 只能使用上面出现的"
            "表名（schema.table），biz_entities 是业务实体，biz_metrics 是可计算的业务指标。\n"
            + answer_format("themes", lang)
        )
    return (
        f"Business context: {context}\n\n{heading}:\n{schema}\n\n"
        f"Identify {count} business themes suited to analytical questions over these tables. `e.g.` after a column "
        "lists real values, `range` the data's minimum and maximum. A theme should hold tables linked by foreign keys "
        "or inferred relationships where it can (for questions that join them). related_tables may only use table "
        "names shown above (schema.table); biz_entities are business entities, biz_metrics are measurable metrics.\n"
        + answer_format("themes", lang)
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
    context = context_text(business_context)
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
    items = "\n".join(candidates)
    if lang == "zh":
        return (
            f"业务背景：{context}\n\n下面是从数据库不同部分归纳出的候选业务主题（每行一个）：\n{items}\n\n"
            f"请合并、取舍这些候选，给出 {count} 个覆盖面最好、适合做数据分析问答的业务主题。related_tables 只能使用"
            "候选主题中出现的表名（schema.table），biz_entities 是业务实体，biz_metrics 是可计算的业务指标。\n"
            + answer_format("themes", lang)
        )
    return (
        f"Business context: {context}\n\nCandidate business themes found in different parts of the database, one "
        f"per line:\n{items}\n\nMerge these candidates and keep the {count} business themes that together cover "
        "the database best for analytical questions. related_tables may only use table names of the candidates "
        "(schema.table); biz_entities are business entities, biz_metrics are measurable metrics.\n"
        + answer_format("themes", lang)
    )


def merge_theme_groups(candidates: list[Theme], business_context: str, count: int, lang: str,
                       budget: PromptBudget) -> list[tuple[list[Theme], str]]:
    """The candidates packed into groups whose merge prompt fits, each with that prompt."""
    context = context_text(business_context)
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


# -- repairs ----------------------------------------------------------------------------------------------------


def _repair_item(r: RepairRequest) -> dict[str, Any]:
    item: dict[str, Any] = {"index": r.index, "question": r.question, "sql": r.sql,
                            "error": r.error[:REPAIR_ERROR_MAX_CHARS]}
    if r.attempts:  # what was tried before, so the model does not propose it again
        item["previous_attempts"] = [{"sql": a.get("sql", ""), "error": str(a.get("error", ""))[:200]}
                                     for a in r.attempts]
    return item


def _repair_items(requests: list[RepairRequest]) -> str:
    return json.dumps([_repair_item(r) for r in requests], ensure_ascii=False, indent=1)


def _repair_text(schema: str, items: str, lang: str) -> str:
    if lang == "zh":
        return (
            f"数据库表结构：\n{schema}\n\n下面这些 SQL 在 PostgreSQL 上执行 EXPLAIN 时报错。"
            "请根据错误信息和表结构逐个修复，保持问题的原意；只使用上面的表和字段；SQL 单行、以分号结尾、只能是 "
            f"SELECT/WITH。无法修复的不要输出；index 是下面每条的 index。\n{items}\n\n" + answer_format("repairs", lang)
        )
    return (
        f"Database tables:\n{schema}\n\nThese SQL statements fail EXPLAIN on PostgreSQL. Fix each "
        "one using the error and the schema, keeping the question's meaning; only the tables and columns above; "
        "one line, ending with ';', SELECT/WITH only. Leave out what you cannot fix; index is each item's index.\n"
        f"{items}\n\n" + answer_format("repairs", lang)
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
    # The tables with their ranges (a repair may be of a filter outside them) but without example values.
    chosen = [replace(doc, column_values={}) for doc in select_repair_docs(requests, docs)]
    schema, _shown = fit_schema_text(chosen, room - fixed)
    return [(list(requests), _repair_text(schema, items, lang))], []


def reask_text(error: str, lang: str) -> str:
    if lang == "zh":
        return f"你的回答无法使用：{error}。请重新回答，只输出符合要求格式的 JSON 对象，不要任何其他文字。"
    return f"Your answer could not be used: {error}. Answer again with only the JSON object in the required " \
           "format, no other text."
