"""Question→SQL templates of the heuristic provider over the real columns of a theme's tables: counts, sums,
averages, Top-N, trends, ranges, enum groups and joins along the relationships, here; shares, window rankings,
month-over-month CTEs, three-table joins and filters on real values and dates in pairs_shapes; mixed round-robin
by kind, so that the first pairs of a theme show every shape its tables allow.

Every SQL is built from catalog names (quoted where PostgreSQL needs it) and escaped literals, so it passes EXPLAIN.
"""
from __future__ import annotations

from dataclasses import dataclass

from chalicelib.pipeline.models import ColumnMeta, QAPair, TableDoc, TableMeta, quote_ident
from chalicelib.pipeline.text import collapse_whitespace
from chalicelib.providers.heuristic.columns import (
    date_columns,
    is_audit_user,
    label_column,
    measure_columns,
    short_label,
    soft_delete_column,
    table_label,
)
from chalicelib.providers.heuristic.pairs_shapes import (
    add_join_shapes,
    add_single_table_shapes,
    date_bounds,
    literal,
)
from chalicelib.providers.heuristic.vocabulary import split_words

TOP_N = 10


@dataclass
class _Table:
    """One table as the templates see it: labels, alias, and the columns worth asking about."""

    doc: TableDoc
    alias: str
    label: str

    @property
    def meta(self) -> TableMeta:
        return self.doc.meta

    def col_label(self, name: str) -> str:
        comment = self.doc.column_comments.get(name) or (self.meta.column(name) or _NO_COLUMN).comment
        if comment:
            # "状态（1正常 0停用）" -> "状态": the short name reads better inside a question.
            return short_label(comment) or name
        return name

    def col(self, name: str) -> str:
        return f"{self.alias}.{quote_ident(name)}"

    def soft_delete(self) -> list[str]:
        column = soft_delete_column(self.meta)
        return [f"{self.col(column)} IS NULL"] if column else []

    def source(self) -> str:
        return f"{self.meta.ref.sql_name} {self.alias}"


_NO_COLUMN = ColumnMeta(name="", data_type="", udt_name="", type_kind="base", max_length=None, nullable=True,
                        default=None, comment=None)


def _select(columns: str, source: str, where: list[str] | None = None, *, group: str = "", order: str = "",
            limit: int | None = None) -> str:
    """One SELECT from parts that are already quoted identifiers / escaped literals."""
    parts = ["SELECT", columns, "FROM", source]
    if where:
        parts += ["WHERE", " AND ".join(where)]
    if group:
        parts += ["GROUP BY", group]
    if order:
        parts += ["ORDER BY", order]
    if limit is not None:
        parts += ["LIMIT", str(limit)]
    return " ".join(parts) + ";"


def _alias_for(name: str, taken: set[str]) -> str:
    base = "".join(w[0] for w in split_words(name)) or "t"
    if not base[0].isalpha():
        base = "t" + base
    alias, n = base, 1
    while alias in taken or quote_ident(alias) != alias:
        n += 1
        alias = f"{base}{n}"
    taken.add(alias)
    return alias


Template = tuple[str, str]  # (question, sql)


class _PairBuilder:
    """Question/SQL templates over the real columns of a theme's tables, grouped by kind."""

    KINDS = ("count", "join_top", "share", "month", "join3", "trend", "range", "rank", "enum_group", "pop",
             "value_filter", "enum_value", "sum", "top", "avg", "join_count", "latest", "daily")

    def __init__(self, docs: list[TableDoc], all_docs: list[TableDoc], zh: bool):
        self.zh = zh
        self.taken: set[str] = set()
        self.tables = [self._table(d) for d in docs]
        self.by_ref = {t.meta.ref: t for t in self.tables}
        self.all_by_ref = {d.meta.ref: d for d in all_docs}
        self.kinds: dict[str, list[tuple[int, Template]]] = {k: [] for k in self.KINDS}
        self._current = 0

    def _table(self, doc: TableDoc) -> _Table:
        return _Table(doc=doc, alias=_alias_for(doc.meta.ref.name, self.taken), label=table_label(doc))

    def _t(self, zh: str, en: str) -> str:
        return zh if self.zh else en

    def add(self, kind: str, question: str, sql: str) -> None:
        self.kinds[kind].append((self._current, (collapse_whitespace(question), collapse_whitespace(sql))))

    def build(self) -> list[Template]:
        for position, table in enumerate(self.tables):
            self._current = position
            self._single_table(table)
            self._joins(table)
            add_single_table_shapes(self, table)
            add_join_shapes(self, table)
        # Round-robin over kinds; inside a kind, the table used least so far goes first. The first `count`
        # pairs then mix counts, trends, rankings… across all the theme's tables.
        remaining = {kind: list(items) for kind, items in self.kinds.items()}
        used: dict[int, int] = {}
        ordered: list[Template] = []
        seen: set[str] = set()
        while any(remaining.values()):
            for kind in self.KINDS:
                items = remaining[kind]
                if not items:
                    continue
                best = min(range(len(items)), key=lambda j: (used.get(items[j][0], 0), j))
                position, item = items.pop(best)
                if item[1] in seen:
                    continue
                seen.add(item[1])
                used[position] = used.get(position, 0) + 1
                ordered.append(item)
        return ordered

    def _single_table(self, t: _Table) -> None:
        meta, doc, src = t.meta, t.doc, t.source()
        sd = t.soft_delete()
        measures = measure_columns(meta)
        dates = date_columns(meta)
        label = label_column(meta, doc.enums)
        self.add("count", self._t(f"{t.label}共有多少条记录？", f"How many records are there in {t.label}?"),
                 _select("COUNT(*) AS record_count", src, sd))
        for m in measures:
            ml, mc = t.col_label(m.name), t.col(m.name)
            total = quote_ident(f"total_{m.name}")
            self.add("sum", self._t(f"{t.label}的{ml}合计是多少？", f"What is the total {ml} in {t.label}?"),
                     _select(f"SUM({mc}) AS {total}", src, sd))
            self.add("avg", self._t(f"{t.label}的平均{ml}是多少？", f"What is the average {ml} in {t.label}?"),
                     _select(f"AVG({mc}) AS {quote_ident(f'avg_{m.name}')}", src, sd))
            if label is not None:
                gl, gc = t.col_label(label.name), t.col(label.name)
                self.add("top", self._t(f"按{gl}统计{ml}合计，排名前{TOP_N}的是哪些？",
                                        f"Which {TOP_N} {gl} values have the highest total {ml} in {t.label}?"),
                         _select(f"{gc}, SUM({mc}) AS {total}", src, sd, group=gc, order=f"{total} DESC NULLS LAST",
                                 limit=TOP_N))
        for name, values in doc.enums.items():
            if meta.column(name) is None or is_audit_user(name):
                continue
            el, ec = t.col_label(name), t.col(name)
            self.add("enum_group", self._t(f"按{el}统计{t.label}的记录数分布如何？",
                                           f"How many {t.label} records are there per {el}?"),
                     _select(f"{ec}, COUNT(*) AS record_count", src, sd, group=ec, order="record_count DESC"))
            for value in values:
                if value is None or str(value) == "":
                    continue
                self.add("enum_value", self._t(f"{el}为“{value}”的{t.label}有多少条？",
                                               f"How many {t.label} records have {el} '{value}'?"),
                         _select("COUNT(*) AS record_count", src, [f"{ec} = {literal(value)}", *sd]))
            for m in measures[:1]:
                ml = t.col_label(m.name)
                avg = quote_ident(f"avg_{m.name}")
                self.add("avg", self._t(f"不同{el}的{t.label}平均{ml}分别是多少？",
                                        f"What is the average {ml} per {el} in {t.label}?"),
                         _select(f"{ec}, AVG({t.col(m.name)}) AS {avg}", src, sd, group=ec,
                                 order=f"{avg} DESC NULLS LAST"))
        for d in dates[:1]:
            dl, dc = t.col_label(d.name), t.col(d.name)
            if measures:
                m = measures[0]
                ml, total = t.col_label(m.name), quote_ident(f"total_{m.name}")
                self.add("trend", self._t(f"{t.label}的{ml}按月（{dl}）变化趋势如何？",
                                          f"How does the total {ml} in {t.label} change by month of {dl}?"),
                         _select(f"date_trunc('month', {dc}) AS month, SUM({t.col(m.name)}) AS {total}", src, sd,
                                 group="1", order="1"))
            self.add("daily", self._t(f"按{dl}统计，{t.label}每天有多少条记录？",
                                      f"How many {t.label} records are there per day of {dl}?"),
                     _select(f"CAST({dc} AS date) AS day, COUNT(*) AS record_count", src, sd, group="1", order="1"))
            bounds = date_bounds(t, d.name)
            if bounds:
                start, end = bounds
                cond = f"CAST({dc} AS date) BETWEEN {literal(start)} AND {literal(end)}"
                select = "COUNT(*) AS record_count"
                mq = ""
                if measures:
                    m = measures[0]
                    select += f", SUM({t.col(m.name)}) AS {quote_ident(f'total_{m.name}')}"
                    mq = self._t(f"和{t.col_label(m.name)}合计", f" and the total {t.col_label(m.name)}")
                self.add("range", self._t(f"{dl}在{start}至{end}之间的{t.label}记录数{mq}是多少？",
                                          f"How many {t.label} records{mq} have {dl} between {start} and {end}?"),
                         _select(select, src, [cond, *sd]))
            shown = [c for c in ([label] if label else []) + measures[:2] if c is not None]
            columns = ", ".join([t.col(c.name) for c in shown] + [dc])
            self.add("latest", self._t(f"按{dl}最新的{TOP_N}条{t.label}记录明细是什么？",
                                       f"What are the {TOP_N} latest {t.label} records by {dl}?"),
                     _select(columns, src, sd, order=f"{dc} DESC NULLS LAST", limit=TOP_N))

    def _joins(self, fact: _Table) -> None:
        for fk in fact.meta.relationships:
            dim_doc = next((d for r, d in self.all_by_ref.items()
                            if r.schema == fk.ref_schema and r.name == fk.ref_table), None)
            if dim_doc is None or dim_doc.meta.ref == fact.meta.ref:
                continue
            dim = self.by_ref.get(dim_doc.meta.ref) or self._table(dim_doc)
            label = label_column(dim.meta, dim_doc.enums)
            if label is None:
                continue
            on = " AND ".join(f"{fact.col(c)} = {dim.col(r)}" for c, r in zip(fk.columns, fk.ref_columns, strict=False))
            src = f"{fact.source()} JOIN {dim.source()} ON {on}"
            sd = fact.soft_delete() + dim.soft_delete()
            gl, gc = dim.col_label(label.name), dim.col(label.name)
            self.add("join_count", self._t(f"每个{dim.label}（{gl}）对应的{fact.label}记录数是多少？",
                                           f"How many {fact.label} records does each {dim.label} have?"),
                     _select(f"{gc}, COUNT(*) AS record_count", src, sd, group=gc, order="record_count DESC",
                             limit=TOP_N))
            for m in measure_columns(fact.meta)[:2]:
                ml, total = fact.col_label(m.name), quote_ident(f"total_{m.name}")
                self.add("join_top", self._t(f"{ml}合计排名前{TOP_N}的{dim.label}是哪些？",
                                             f"Which {TOP_N} {dim.label} have the highest total {ml}?"),
                         _select(f"{gc}, SUM({fact.col(m.name)}) AS {total}", src, sd, group=gc,
                                 order=f"{total} DESC NULLS LAST", limit=TOP_N))


def generate_template_pairs(docs: list[TableDoc], all_docs: list[TableDoc], zh: bool, count: int) -> list[QAPair]:
    """Up to `count` template pairs over `docs` (joins may reach any of `all_docs`), in a fixed order."""
    return [QAPair(question=q, sql=s) for q, s in _PairBuilder(docs, all_docs, zh).build()[:count]]
