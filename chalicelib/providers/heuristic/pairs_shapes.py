"""The heuristic provider's query shapes beyond one-table aggregates: joins of two and three tables along the
relationships (declared, then inferred), shares of a total, rankings with window functions, month-over-month
comparisons in a CTE, and filters on real values and on the dates the data covers.

Each function adds templates to a `_PairBuilder` (chalicelib.providers.heuristic.pairs). The rules every shape
keeps: identifiers from the catalog (quoted where needed), literals escaped, the soft-delete filter of every
table the query reads (`delete_ts IS NULL`-style, inside the CTE when there is one), inner joins only (so the
filters belong in WHERE), and a question in the business words of the comments, never a raw column name when
the column has a comment.
"""
from __future__ import annotations

import re
from typing import Any

from chalicelib.pipeline.models import ForeignKey, quote_ident
from chalicelib.providers.heuristic.columns import date_columns, is_audit_user, label_column, measure_columns
from chalicelib.providers.heuristic.vocabulary import get_vocabulary

# pairs._PairBuilder and pairs._Table (pairs imports this module, so they are not imported back here)
_PairBuilder = Any
_Table = Any

TOP_N = 10
_DAY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})")


def literal(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def on_clause(left: _Table, fk: ForeignKey, right: _Table) -> str:
    return " AND ".join(f"{left.col(c)} = {right.col(r)}" for c, r in zip(fk.columns, fk.ref_columns, strict=False))


def statement(select: str, source: str, *conditions: list[str], tail: str = "", end: str = ";") -> str:
    """`SELECT select FROM source [WHERE c AND …] [tail]` from parts already quoted / escaped."""
    parts = ["SELECT", select, "FROM", source]
    flat = [c for group in conditions for c in group]
    if flat:
        parts += ["WHERE", " AND ".join(flat)]
    if tail:
        parts.append(tail)
    return " ".join(parts) + end


def neighbours(b: _PairBuilder, t: _Table) -> list[tuple[ForeignKey, _Table]]:
    """The tables `t` refers to (its relationships, declared then inferred) that are known, other than itself."""
    found = []
    for fk in t.meta.relationships:
        doc = next((d for r, d in b.all_by_ref.items() if r.schema == fk.ref_schema and r.name == fk.ref_table), None)
        if doc is None or doc.meta.ref == t.meta.ref:
            continue
        found.append((fk, b.by_ref.get(doc.meta.ref) or b._table(doc)))
    return found


def real_values(t: _Table, column: str, count: int = 2) -> list[str]:
    """A few real values of a column: the profile's distinct values, else the enum values, else the samples."""
    values = list(t.doc.column_values.get(column) or t.doc.enums.get(column) or [])
    if not values:
        values = [str(row[column]) for row in t.doc.samples if row.get(column) not in (None, "")]
    out: list[str] = []
    for value in values:
        if value not in out and len(value) <= 60 and "\n" not in value:
            out.append(value)
        if len(out) >= count:
            break
    return out


def date_bounds(t: _Table, column: str) -> tuple[str, str] | None:
    """The first and last day the data covers: the column's value range when profiled, else the samples."""
    bounds = t.doc.value_ranges.get(column)
    days = [str(v)[:10] for v in bounds] if bounds and len(bounds) == 2 else [
        str(row[column])[:10] for row in t.doc.samples if row.get(column)]
    days = sorted(d for d in days if _DAY.match(d))
    if len(days) < 2 or days[0] == days[-1]:
        return None
    return days[0], days[-1]


def latest_day(t: _Table, column: str) -> str | None:
    """The last day the data covers: the top of the column's value range when profiled, else the latest sample."""
    bounds = t.doc.value_ranges.get(column)
    days = [str(bounds[-1])[:10]] if bounds else [str(row[column])[:10] for row in t.doc.samples if row.get(column)]
    days = sorted(d for d in days if _DAY.match(d))
    return days[-1] if days else None


def _month_after(year: int, month: int) -> str:
    return f"{year + month // 12}-{month % 12 + 1:02d}-01"


def _aggregate(t: _Table, zh: bool) -> tuple[str, str, str]:
    """(select expression, its alias, its words): the first measure's total, else the number of records."""
    measures = measure_columns(t.meta)
    if measures:
        m = measures[0]
        alias = quote_ident(f"total_{m.name}")
        words = f"{t.col_label(m.name)}合计" if zh else f"total {t.col_label(m.name)}"
        return f"SUM({t.col(m.name)})", alias, words
    return "COUNT(*)", "record_count", "记录数" if zh else "number of records"


def _group_column(t: _Table) -> str | None:
    label = label_column(t.meta, t.doc.enums)
    if label is not None:
        return label.name
    return next((c for c in t.doc.enums if t.meta.column(c) is not None and not is_audit_user(c)), None)


def add_single_table_shapes(b: _PairBuilder, t: _Table) -> None:
    """Shares, rankings, month-over-month and date filters over one table."""
    src, sd = t.source(), t.soft_delete()
    measures = measure_columns(t.meta)
    group = _group_column(t)
    if group is not None:
        gl, gc = t.col_label(group), t.col(group)
        if measures:
            m = measures[0]
            ml, mc, total = t.col_label(m.name), t.col(m.name), quote_ident(f"total_{m.name}")
            b.add("share", b._t(f"各{gl}的{ml}占{t.label}总{ml}的比例分别是多少？",
                                f"What share of the total {ml} in {t.label} does each {gl} account for?"),
                  statement(f"{gc}, SUM({mc}) AS {total}, ROUND(100.0 * SUM({mc})::numeric / "
                            f"NULLIF(SUM(SUM({mc})::numeric) OVER (), 0), 2) AS share_pct", src, sd,
                            tail=f"GROUP BY {gc} ORDER BY {total} DESC NULLS LAST"))
        elif group in t.doc.enums:
            b.add("share", b._t(f"{t.label}中各{gl}的记录数占比是多少？",
                                f"What share of the {t.label} records does each {gl} have?"),
                  statement(f"{gc}, COUNT(*) AS record_count, ROUND(100.0 * COUNT(*) / SUM(COUNT(*)) OVER (), 2) "
                            "AS share_pct", src, sd, tail=f"GROUP BY {gc} ORDER BY record_count DESC"))
    audit = get_vocabulary().audit_time
    dates = [c for c in date_columns(t.meta) if c.name.lower() not in audit]  # business dates, not bookkeeping
    if not dates:
        return
    d = dates[0]
    dl, dc = t.col_label(d.name), t.col(d.name)
    expr, alias, words = _aggregate(t, b.zh)
    b.add("pop", b._t(f"{t.label}每月的{words}与上月相比变化了多少（按{dl}）？",
                      f"How does the monthly {words} of {t.label} (by {dl}) change from the previous month?"),
          "WITH monthly AS (" + statement(f"date_trunc('month', {dc}) AS month, {expr} AS {alias}", src, sd,
                                          tail="GROUP BY 1", end=") ")
          + statement(f"month, {alias}, LAG({alias}) OVER (ORDER BY month) AS previous_month, "
                      f"ROUND(100.0 * ({alias} - LAG({alias}) OVER (ORDER BY month))::numeric / "
                      f"NULLIF((LAG({alias}) OVER (ORDER BY month))::numeric, 0), 2) AS change_pct", "monthly",
                      tail="ORDER BY month"))
    last = latest_day(t, d.name)
    if last:  # the latest month the data covers
        year, month = int(last[:4]), int(last[5:7])
        start, end = f"{year}-{month:02d}-01", _month_after(year, month)
        cond = f"{dc} >= {literal(start)} AND {dc} < {literal(end)}"
        period = f"{year}年{month}月" if b.zh else f"{year}-{month:02d}"
        if group is not None:
            gl, gc = t.col_label(group), t.col(group)
            b.add("month", b._t(f"{period}各{gl}的{t.label}{words}是多少？",
                                f"What is the {words} of {t.label} per {gl} in {period}?"),
                  statement(f"{gc}, {expr} AS {alias}", src, [cond], sd,
                            tail=f"GROUP BY {gc} ORDER BY {alias} DESC NULLS LAST LIMIT {TOP_N}"))
        else:
            b.add("month", b._t(f"{period}{t.label}的{words}是多少？",
                                f"What is the {words} of {t.label} in {period}?"),
                  statement(f"{expr} AS {alias}", src, [cond], sd))


def add_join_shapes(b: _PairBuilder, fact: _Table) -> None:
    """Rankings with a window function and filters on a real value across one relationship; three-table joins
    along two relationships (a chain fact -> dim -> dim of dim, or two dimensions over a link table)."""
    near = neighbours(b, fact)
    expr, alias, words = _aggregate(fact, b.zh)
    for fk, dim in near:
        group = _group_column(dim)
        if group is None:
            continue
        gl, gc = dim.col_label(group), dim.col(group)
        src = f"{fact.source()} JOIN {dim.source()} ON {on_clause(fact, fk, dim)}"
        sd = fact.soft_delete() + dim.soft_delete()
        b.add("rank", b._t(f"按{fact.label}的{words}给各{dim.label}排名，前{TOP_N}名是哪些？",
                           f"Rank the {dim.label} by the {words} of {fact.label}: which are the top {TOP_N}?"),
              statement(f"{gc}, {expr} AS {alias}, RANK() OVER (ORDER BY {expr} DESC NULLS LAST) AS ranking", src,
                        sd, tail=f"GROUP BY {gc} ORDER BY ranking LIMIT {TOP_N}"))
        for value in real_values(dim, group, 1):
            b.add("value_filter", b._t(f"{gl}为“{value}”的{dim.label}，{fact.label}的{words}是多少？",
                                       f"What is the {words} of {fact.label} for the {dim.label} '{value}'?"),
                  statement(f"{expr} AS {alias}", src, [f"{gc} = {literal(value)}"], sd))
        for fk2, dim2 in neighbours(b, dim):
            if dim2.meta.ref in (fact.meta.ref, dim.meta.ref):
                continue
            group2 = _group_column(dim2)
            if group2 is None:
                continue
            g2l, g2c = dim2.col_label(group2), dim2.col(group2)
            src3 = f"{src} JOIN {dim2.source()} ON {on_clause(dim, fk2, dim2)}"
            b.add("join3", b._t(f"按{dim2.label}（{g2l}）汇总，{fact.label}的{words}分别是多少？",
                                f"What is the {words} of {fact.label} per {dim2.label} ({g2l})?"),
                  statement(f"{g2c}, {expr} AS {alias}", src3, sd, dim2.soft_delete(),
                            tail=f"GROUP BY {g2c} ORDER BY {alias} DESC NULLS LAST LIMIT {TOP_N}"))
    for i, (fk_a, a) in enumerate(near):
        for fk_b, other in near[i + 1:]:
            group_a = _group_column(a)
            if group_a is None or a.meta.ref == other.meta.ref:
                continue
            counted = (f"COUNT(DISTINCT {', '.join(other.col(c) for c in other.meta.primary_key)})"
                       if len(other.meta.primary_key) == 1 else "COUNT(*)")
            al, ac = a.col_label(group_a), a.col(group_a)
            b.add("join3", b._t(f"每个{a.label}（{al}）关联了多少个{other.label}？",
                                f"How many {other.label} are linked to each {a.label} ({al}) through {fact.label}?"),
                  statement(f"{ac}, {counted} AS linked_count",
                            f"{fact.source()} JOIN {a.source()} ON {on_clause(fact, fk_a, a)} "
                            f"JOIN {other.source()} ON {on_clause(fact, fk_b, other)}",
                            fact.soft_delete(), a.soft_delete(), other.soft_delete(),
                            tail=f"GROUP BY {ac} ORDER BY linked_count DESC LIMIT {TOP_N}"))
