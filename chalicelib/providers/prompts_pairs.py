"""The Question→SQL prompt of a theme, grounded in the data: the theme's tables with a few real values and the data's
ranges per column (chalicelib.pipeline.schema_text), the relationships to join along (declared and inferred), the
date ranges the filters must stay inside (never `CURRENT_DATE - n` on data that ended in the past), the shapes to
cover (joins of 2–3 tables, CTE, window, ratio, period comparison), Chinese column aliases when the business
context is Chinese, and two example pairs built from the task's own tables, names and values."""
from __future__ import annotations

import datetime as dt
import json
import re

from chalicelib.pipeline.models import ColumnMeta, TableDoc, TableRef, Theme, quote_ident
from chalicelib.pipeline.profiles import NUMERIC_TYPES, TEMPORAL_TYPES, is_obvious_id
from chalicelib.pipeline.prompt_budget import PromptBudget, clip_to_tokens, estimate_tokens, fit_schema_text
from chalicelib.providers.prompts_common import answer_format, context_text, room_for_user_prompt

THEME_FIELD_MAX_TOKENS = 600  # a theme's description, entities and metrics in the pairs prompt
RELATIONSHIPS_SHOWN = 20
DATE_RANGES_SHOWN = 10
EXAMPLE_MAX_TOKENS = 300  # each example pair
SOFT_DELETE_COLUMNS = ("delete_ts", "deleted_at")
_AUDIT = re.compile(r"(creat|updat|delet|modif|insert|_by$|^version$|etl|load)", re.I)
_ALIAS_CUT = re.compile(r"[,，;；:：(（\[【/、\s]")
_PLAIN_ALIAS = re.compile(r"^[^\W\d][\w]*$")
_MEASURE_HINT = re.compile(r"(amount|sum|total|pay|price|qty|quantity|count|revenue|sales|score|金额|数|量|额|收入)",
                           re.I)
_TOTAL_HINT = re.compile(r"(sum|total|总)", re.I)
_LABEL_HINT = re.compile(r"(name|title|名称|名)", re.I)


# -- the pieces of a table an example uses ---------------------------------------------------------------------


def _label(doc: TableDoc, col: ColumnMeta, lang: str) -> str:
    """A column's business name: its comment's first phrase, else its name (words, in English)."""
    comment = doc.column_comments.get(col.name) or col.comment or ""
    phrase = _ALIAS_CUT.split(comment.strip(), maxsplit=1)[0][:12]
    if phrase and (lang == "zh") == bool(re.search(r"[\u4e00-\u9fff]", phrase)):
        return phrase
    return col.name.replace("_", " ").strip() or col.name


def _alias(doc: TableDoc, col: ColumnMeta, lang: str, prefix: str = "") -> str:
    """`服务区名称` (Chinese business name) or `total_pay_sum`, quoted only where SQL needs it."""
    if lang == "zh":
        text = prefix + _label(doc, col, lang)
        return text if _PLAIN_ALIAS.match(text) else quote_ident(text)
    return quote_ident(re.sub(r"\W+", "_", f"{prefix}{col.name}".lower()).strip("_") or "value")


def _temporal(doc: TableDoc, col: ColumnMeta) -> bool:
    if col.udt_name in TEMPORAL_TYPES:
        return True
    low = (doc.value_ranges.get(col.name) or [""])[0]
    return col.type_kind == "domain" and bool(re.match(r"^\d{4}-\d\d-\d\d", low))


def _business(col: ColumnMeta) -> bool:
    return not _AUDIT.search(col.name)


def _text_column(doc: TableDoc) -> ColumnMeta | None:
    """The column to filter or group on: real values known, business-named ones first."""
    candidates = [c for c in doc.meta.columns if doc.column_values.get(c.name) and _business(c)
                  and c.udt_name != "bool" and not is_obvious_id(doc.meta, c)]
    candidates.sort(key=lambda c: (not _LABEL_HINT.search(c.name + (doc.column_comments.get(c.name) or "")),
                                   not (doc.column_comments.get(c.name) or c.comment)))
    return candidates[0] if candidates else None


def _measure_column(doc: TableDoc) -> ColumnMeta | None:
    candidates = [c for c in doc.meta.columns if c.name in doc.value_ranges and not _temporal(doc, c) and _business(c)
                  and (c.udt_name in NUMERIC_TYPES or c.type_kind == "domain")]

    def rank(col: ColumnMeta) -> tuple[int, bool]:  # totals, then measures, then the rest; amounts before counts
        text = col.name + (doc.column_comments.get(col.name) or col.comment or "")
        hint = 0 if _TOTAL_HINT.search(text) else 1 if _MEASURE_HINT.search(text) else 2
        return hint, col.udt_name not in ("numeric", "float4", "float8")

    candidates.sort(key=rank)
    return candidates[0] if candidates else None


def _date_column(doc: TableDoc) -> ColumnMeta | None:
    return next((c for c in doc.meta.columns if c.name in doc.value_ranges and _temporal(doc, c) and _business(c)),
                None)


def _last_month(doc: TableDoc, col: ColumnMeta) -> tuple[str, str]:
    """The last 30 days of the column's range (its whole range when shorter), as dates."""
    low, high = (v[:10] for v in doc.value_ranges[col.name][:2])
    try:
        start = max(dt.date.fromisoformat(low), dt.date.fromisoformat(high) - dt.timedelta(days=29))
        return start.isoformat(), high
    except ValueError:
        return low, high


def _soft_delete(doc: TableDoc, alias: str = "") -> list[str]:
    return [f"{alias}{quote_ident(c.name)} IS NULL" for c in doc.meta.columns if c.name in SOFT_DELETE_COLUMNS]


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _where(conditions: list[str]) -> str:
    return f" WHERE {' AND '.join(conditions)}" if conditions else ""


def _sql(*parts: str) -> str:
    """One statement from parts that are already quoted identifiers / escaped literals, ending with ';'."""
    return " ".join(part.strip() for part in parts if part.strip()) + ";"


def _total_alias(doc: TableDoc, col: ColumnMeta, lang: str) -> str:
    if lang == "zh":
        return _alias(doc, col, lang, "" if "总" in _label(doc, col, lang) else "总")
    return _alias(doc, col, lang, "total_")


def _count_alias(lang: str) -> str:
    return "记录数" if lang == "zh" else "row_count"


# -- the two examples ----------------------------------------------------------------------------------------------


def _filter_example(docs: list[TableDoc], lang: str) -> dict[str, str] | None:
    """One table, a filter on a real value and on the last month of the data, an aggregate with an alias."""
    doc = next((d for d in docs if _text_column(d) and (_measure_column(d) or _date_column(d))), None) \
        or next((d for d in docs if _text_column(d)), None)
    if doc is None:
        return None
    text, measure, day = _text_column(doc), _measure_column(doc), _date_column(doc)
    value = doc.column_values[text.name][0]
    conditions = [f"{quote_ident(text.name)} = {_literal(value)}", *_soft_delete(doc)]
    period = ""
    if day is not None:
        low, high = _last_month(doc, day)
        conditions.insert(1, f"{quote_ident(day.name)} BETWEEN '{low}' AND '{high}'")
        period = f"在 {low} 至 {high} 期间" if lang == "zh" else f" between {low} and {high}"
    if measure is not None:
        select = f"SUM({quote_ident(measure.name)}) AS {_total_alias(doc, measure, lang)}"
        what = _label(doc, measure, lang)
        question = (f"{value}{period}的{what}合计是多少？" if lang == "zh"
                    else f"What is the total {what} for {value}{period}?")
    else:
        select = "COUNT(*) AS " + _count_alias(lang)
        question = (f"{value}{period}有多少条记录？" if lang == "zh"
                    else f"How many records are there for {value}{period}?")
    sql = _sql("SELECT", select, "FROM", doc.meta.ref.sql_name, _where(conditions))
    return {"question": question, "sql": sql}


def _join_example(docs: list[TableDoc], lang: str) -> dict[str, str] | None:
    """Two tables joined along a known relationship, grouped by the parent's business name, a Top-10."""
    by_ref = {d.meta.ref: d for d in docs}
    for child in docs:
        for fk in child.meta.relationships:
            parent = by_ref.get(TableRef(fk.ref_schema, fk.ref_table))
            if parent is None or parent is child:
                continue
            group = _text_column(parent) or parent.meta.column(fk.ref_columns[0])
            if group is None:
                continue
            on = " AND ".join(f"a.{quote_ident(c)} = b.{quote_ident(r)}"
                              for c, r in zip(fk.columns, fk.ref_columns, strict=False))
            measure = _measure_column(child)
            if measure is not None:
                value = f"SUM(a.{quote_ident(measure.name)}) AS {_total_alias(child, measure, lang)}"
                what = _label(child, measure, lang)
            else:
                value, what = "COUNT(*) AS " + _count_alias(lang), None
            sql = _sql("SELECT", f"b.{quote_ident(group.name)} AS {_alias(parent, group, lang)}, {value}",
                       "FROM", child.meta.ref.sql_name, "a JOIN", parent.meta.ref.sql_name, "b ON", on,
                       _where(_soft_delete(child, "a.") + _soft_delete(parent, "b.")),
                       f"GROUP BY b.{quote_ident(group.name)} ORDER BY 2 DESC LIMIT 10")
            name = _label(parent, group, lang)
            if lang == "zh":
                question = f"{what}合计最高的 10 个{name}是哪些？" if what else f"记录数最多的 10 个{name}是哪些？"
            else:
                question = f"Which 10 {name} values have the highest total {what}?" if what \
                    else f"Which 10 {name} values have the most records?"
            return {"question": question, "sql": sql}
    return None


def _ranking_example(docs: list[TableDoc], lang: str) -> dict[str, str] | None:
    """No relationship among the tables: a CTE and a window ranking on one table."""
    doc = next((d for d in docs if _text_column(d) and _measure_column(d)), None) \
        or next((d for d in docs if _text_column(d)), None)
    if doc is None:
        return None
    group, measure = _text_column(doc), _measure_column(doc)
    total = f"SUM({quote_ident(measure.name)})" if measure is not None else "COUNT(*)"
    what = _label(doc, measure, lang) if measure is not None else ("记录数" if lang == "zh" else "records")
    rank = "排名" if lang == "zh" else "ranking"
    total_alias = _total_alias(doc, measure, lang) if measure is not None else _count_alias(lang)
    column = quote_ident(group.name)
    sql = _sql("WITH t AS (SELECT", f"{column}, {total} AS total", "FROM", doc.meta.ref.sql_name,
               _where(_soft_delete(doc)), f"GROUP BY {column})",
               "SELECT", f"{column} AS {_alias(doc, group, lang)}, total AS {total_alias},",
               f"RANK() OVER (ORDER BY total DESC) AS {rank}", "FROM t ORDER BY 3 LIMIT 10")
    name = _label(doc, group, lang)
    question = f"各{name}的{what}合计排名前 10 的是哪些？" if lang == "zh" \
        else f"How do the {name} values rank by total {what} (top 10)?"
    return {"question": question, "sql": sql}


def example_pairs(docs: list[TableDoc], lang: str) -> list[dict[str, str]]:
    """Two example pairs over the task's own tables (real names, a real value, the data's dates): a filtered
    aggregate and a join along a relationship (a CTE with a window ranking when the tables have none)."""
    found = [_filter_example(docs, lang), _join_example(docs, lang) or _ranking_example(docs, lang)]
    return [pair for pair in found if pair]


# -- relationships and date ranges -----------------------------------------------------------------------------


def relationship_lines(docs: list[TableDoc], lang: str) -> list[str]:
    """The join conditions among the tables shown (declared foreign keys, then inferred ones with their evidence)."""
    refs = {d.meta.ref for d in docs}
    lines = []
    for doc in docs:
        for fk in doc.meta.relationships:
            target = TableRef(fk.ref_schema, fk.ref_table)
            if target not in refs:
                continue
            on = " AND ".join(f"{doc.meta.ref.sql_name}.{quote_ident(c)} = {target.sql_name}.{quote_ident(r)}"
                              for c, r in zip(fk.columns, fk.ref_columns, strict=False))
            if fk.inferred:
                why = clip_to_tokens(" ".join((fk.evidence or "").split()), 60)
                kind = f"推断关联{('：' + why) if why else ''}" if lang == "zh" else \
                    f"inferred{(': ' + why) if why else ''}"
            else:
                kind = "外键" if lang == "zh" else "foreign key"
            lines.append(f"- {on} （{kind}）" if lang == "zh" else f"- {on} ({kind})")
            if len(lines) >= RELATIONSHIPS_SHOWN:
                return lines
    return lines


def date_ranges(docs: list[TableDoc]) -> tuple[list[str], str | None]:
    """(`table.column: min .. max` for the business date/time columns, or the audit ones (create_ts …) when there
    are none; the latest business date)."""
    business, audit = [], []
    latest: str | None = None
    for doc in docs:
        for col in doc.meta.columns:
            if col.name not in doc.value_ranges or not _temporal(doc, col):
                continue
            low, high = doc.value_ranges[col.name][:2]
            line = f"- {doc.meta.ref.sql_name}.{quote_ident(col.name)}: {low} .. {high}"
            if _business(col):
                business.append(line)
                latest = max(latest or high[:10], high[:10])
            else:
                audit.append(line)
    return (business or audit)[:DATE_RANGES_SHOWN], latest


# -- the prompt --------------------------------------------------------------------------------------------------


def _rules(lang: str, dates: list[str], latest: str | None, alias: str, today: dt.date) -> list[str]:
    past = latest is not None and latest < today.isoformat()
    if lang == "zh":
        rules = ["问题像业务人员的提问，用中文业务名称，不出现英文字段名。",
                 "形态要多样：沿上面的关联连接 2–3 张表、WITH（CTE）、窗口函数排名（RANK() OVER …）、占比或比率、"
                 "同比/环比等时期对比、Top-N、汇总与明细。"]
        if dates:
            rules.append("日期条件必须落在上面的日期范围内，使用具体日期（如 BETWEEN '起始日期' AND '结束日期'）"
                         + (f"；数据截止于 {latest}，早于今天，不要使用 CURRENT_DATE、now() 或 CURRENT_DATE - n "
                            "这类相对今天的条件。" if past else "。"))
        rules += ["按取值筛选时使用上面给出的真实取值（e.g. 后的值）。",
                  f"SELECT 的每一列都用中文别名（如 AS {alias}）。",
                  "每个问题和 SQL 都是单行；SQL 只能是 SELECT（或 WITH … SELECT），使用 PostgreSQL 语法，以分号结尾；"
                  "只使用上面列出的表和字段；有 delete_ts 字段的表加上 delete_ts IS NULL 条件。"]
        return rules
    rules = ["Questions read like a business user's, in business terms, without raw column names.",
             "Vary the shapes: joins of 2-3 tables along the relationships above, WITH (CTE), window rankings "
             "(RANK() OVER …), ratios and shares, period-over-period comparisons, top-N, aggregates and details."]
    if dates:
        rules.append("Date filters stay inside the date ranges above, written as literal dates (BETWEEN 'start' AND "
                     "'end')" + (f"; the data ends on {latest}, before today: never CURRENT_DATE, now() or "
                                 "CURRENT_DATE - n windows." if past else "."))
    rules += ["Filter on the real values shown (after e.g.).",
              f"Give every selected column a readable alias (AS {alias}).",
              "Question and SQL each on one line; the SQL is a single SELECT (or WITH … SELECT) in PostgreSQL syntax "
              "ending with ';', using only the tables and columns above; add `delete_ts IS NULL` for tables that "
              "have a delete_ts column."]
    return rules


def _pairs_text(theme: Theme, schema: str, shown: list[TableDoc], context: str, count: int, lang: str,
                today: dt.date) -> str:
    clip = THEME_FIELD_MAX_TOKENS
    topic = clip_to_tokens(theme.topic_name, 100)
    description = clip_to_tokens(theme.description, clip)
    entities = clip_to_tokens(", ".join(theme.biz_entities), clip // 2)
    metrics = clip_to_tokens(", ".join(theme.biz_metrics), clip // 2)
    joins = relationship_lines(shown, lang)
    dates, latest = date_ranges(shown)
    examples = example_pairs(shown, lang)
    alias = next((m.group(1) for e in examples for m in [re.search(r" AS (\S+?)[,\s]", e["sql"])] if m),
                 "服务区名称" if lang == "zh" else "total_revenue")
    rules = _rules(lang, dates, latest, alias, today)
    shots = "\n".join(clip_to_tokens(json.dumps(e, ensure_ascii=False), EXAMPLE_MAX_TOKENS) for e in examples)
    numbered = "\n".join(f"{n}. {rule}" for n, rule in enumerate(rules, start=1))
    if lang == "zh":
        return (
            f"业务背景：{context}\n主题：{topic}\n主题说明：{description}\n业务实体：{entities}\n业务指标：{metrics}\n\n"
            f"可用的表（只能使用这些表和字段；e.g. 后是字段的真实取值，range 是数据中的最小值和最大值）：\n{schema}\n\n"
            f"表之间的关联（多表查询只沿这些关联 JOIN）：\n{chr(10).join(joins) or '（无）'}\n\n"
            + (f"数据的日期范围：\n{chr(10).join(dates)}\n\n" if dates else "")
            + f"请生成 {count} 个不同的中文业务问题及对应的 PostgreSQL 查询。要求：\n{numbered}\n"
            + (f"示例（取自这些表）：\n{shots}\n" if shots else "") + answer_format("pairs", lang)
        )
    return (
        f"Business context: {context}\nTheme: {topic}\nTheme description: {description}\n"
        f"Entities: {entities}\nMetrics: {metrics}\n\n"
        f"Available tables (use only these tables and columns; `e.g.` lists real values, `range` the data's minimum "
        f"and maximum):\n{schema}\n\n"
        f"Relationships (join only along these):\n{chr(10).join(joins) or '(none)'}\n\n"
        + (f"Date ranges of the data:\n{chr(10).join(dates)}\n\n" if dates else "")
        + f"Write {count} distinct business questions in English with their PostgreSQL queries. Rules:\n{numbered}\n"
        + (f"Examples (from these tables):\n{shots}\n" if shots else "") + answer_format("pairs", lang)
    )


def pairs_prompt(theme: Theme, docs: list[TableDoc], business_context: str, count: int, lang: str,
                 budget: PromptBudget, *, today: dt.date | None = None) -> str:
    """The theme's tables (`docs`, in the theme's order) in full while they fit, then leaner, then left out; the
    relationships, date ranges and examples are those of the tables shown."""
    today = today or dt.date.today()
    context = context_text(business_context)
    room = room_for_user_prompt(budget, lang)
    fixed = estimate_tokens(_pairs_text(theme, "", docs, context, count, lang, today))
    for _ in range(4):  # the extras of the tables shown may take a little more room than those of all of them
        schema, shown = fit_schema_text(docs, room - fixed)
        text = _pairs_text(theme, schema, shown, context, count, lang, today)
        over = estimate_tokens(text) - room
        if over <= 0:
            return text
        fixed += over
    return _pairs_text(theme, "", [], context, count, lang, today)
