"""HeuristicProvider: a deterministic, schema-driven stand-in used when no LLM is configured.

It is honest about what it is: comments come from existing comments and a dictionary of common column
names (nothing is guessed when a name is unknown), themes from foreign-key clusters, Question→SQL pairs from
templates over real columns. Every SQL it writes is built from the catalog and must pass EXPLAIN. It does not
understand the business; an LLM writes far better comments and questions.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from chalicelib.pipeline.models import (
    ColumnMeta,
    CommentSuggestion,
    LLMUsage,
    QAPair,
    RepairRequest,
    TableDoc,
    TableMeta,
    Theme,
    quote_ident,
)
from chalicelib.providers.llm import is_chinese, is_select_sql, select_theme_docs

HEURISTIC_NAME = "heuristic (no LLM configured)"
MAX_THEME_TABLES = 5
TOP_N = 10

_NUMERIC_UDT = {"int2", "int4", "int8", "numeric", "float4", "float8", "money"}
_TEXT_UDT = {"varchar", "text", "bpchar", "citext", "name"}
_DATE_UDT = {"date", "timestamp", "timestamptz"}
_SOFT_DELETE = ("delete_ts", "deleted_at", "delete_time")
_AUDIT_TIME = {"create_ts", "created_at", "create_time", "gmt_create", "update_ts", "updated_at", "update_time",
               "gmt_modified", *_SOFT_DELETE}
# Who touched a row: low-cardinality in samples ("admin"), but never a business dimension.
_AUDIT_USER = {"created_by", "create_by", "creator", "updated_by", "update_by", "modifier", "deleted_by", "delete_by",
               "version"}
_ENUM_WORDS = {"status", "state", "type", "classify", "category", "level", "kind", "grade", "gender", "flag"}
_NOT_MEASURE_WORDS = {"id", "code", "no", "version", "lat", "lng", "lon", "latitude", "longitude", "year", "month",
                      "day", "sort", "seq", "order", "phone", "zip", "postcode", "status", "state", "type", "level",
                      "flag", "classify", "category"}
_TABLE_PREFIXES = ("bss_", "tb_", "tbl_", "t_", "dim_", "fact_", "ods_", "dwd_", "dws_", "ads_")

# Whole column names with a known meaning: (Chinese, English).
_EXACT_COLUMNS: dict[str, tuple[str, str]] = {
    "id": ("主键ID", "ID"),
    "create_ts": ("创建时间", "Creation time"), "created_at": ("创建时间", "Creation time"),
    "create_time": ("创建时间", "Creation time"), "gmt_create": ("创建时间", "Creation time"),
    "created_by": ("创建人", "Created by"), "create_by": ("创建人", "Created by"), "creator": ("创建人", "Created by"),
    "update_ts": ("更新时间", "Last update time"), "updated_at": ("更新时间", "Last update time"),
    "update_time": ("更新时间", "Last update time"), "gmt_modified": ("更新时间", "Last update time"),
    "updated_by": ("更新人", "Updated by"), "update_by": ("更新人", "Updated by"),
    "delete_ts": ("删除时间（软删除标记）", "Deletion time (soft-delete marker)"),
    "deleted_at": ("删除时间（软删除标记）", "Deletion time (soft-delete marker)"),
    "delete_time": ("删除时间（软删除标记）", "Deletion time (soft-delete marker)"),
    "deleted_by": ("删除人", "Deleted by"), "delete_by": ("删除人", "Deleted by"),
    "version": ("版本号", "Version"),
    "lat": ("纬度", "Latitude"), "latitude": ("纬度", "Latitude"),
    "lng": ("经度", "Longitude"), "lon": ("经度", "Longitude"), "longitude": ("经度", "Longitude"),
    "remark": ("备注", "Remark"), "remarks": ("备注", "Remarks"), "memo": ("备注", "Memo"), "note": ("备注", "Note"),
    "description": ("描述", "Description"),
    "phone": ("电话", "Phone"), "mobile": ("手机号", "Mobile phone"), "tel": ("电话", "Phone"),
    "email": ("邮箱", "Email"), "address": ("地址", "Address"),
    "rmb": ("现金金额", "Cash amount"), "wx": ("微信支付金额", "WeChat Pay amount"),
    "zfb": ("支付宝支付金额", "Alipay amount"),
}
# Meaning of a name's last word: (Chinese, English).
_SUFFIXES: dict[str, tuple[str, str]] = {
    "id": ("ID", "ID"), "name": ("名称", "name"), "code": ("编码", "code"), "no": ("编号", "number"),
    "date": ("日期", "date"), "time": ("时间", "time"), "ts": ("时间", "time"), "at": ("时间", "time"),
    "count": ("数量", "count"), "num": ("数量", "count"), "cnt": ("数量", "count"), "qty": ("数量", "quantity"),
    "quantity": ("数量", "quantity"),
    "amount": ("金额", "amount"), "amt": ("金额", "amount"), "sum": ("金额", "amount"), "price": ("价格", "price"),
    "fee": ("费用", "fee"), "cost": ("成本", "cost"), "money": ("金额", "amount"), "total": ("合计", "total"),
    "rmb": ("现金金额", "cash amount"), "wx": ("微信支付金额", "WeChat Pay amount"),
    "zfb": ("支付宝支付金额", "Alipay amount"),
    "status": ("状态", "status"), "state": ("状态", "state"), "type": ("类型", "type"),
    "classify": ("分类", "category"), "category": ("分类", "category"), "level": ("级别", "level"),
    "rate": ("比率", "rate"), "ratio": ("比例", "ratio"),
}
# Words that compose into Chinese labels ("service_area_name" -> 服务区名称); unknown words stop the composition.
_WORDS_ZH = {
    "service": "服务", "area": "区", "company": "公司", "branch": "分公司", "user": "用户", "customer": "客户",
    "order": "订单", "product": "产品", "goods": "商品", "item": "项目", "store": "门店", "shop": "商店",
    "station": "站点", "car": "车辆", "vehicle": "车辆", "road": "路段", "route": "线路", "highway": "高速公路",
    "business": "营业", "day": "日", "month": "月", "year": "年", "data": "数据", "pay": "支付", "payment": "支付",
    "order_count": "订单数", "province": "省份", "city": "城市", "region": "区域", "dept": "部门",
    "department": "部门", "employee": "员工", "staff": "员工", "contract": "合同", "project": "项目",
    "supplier": "供应商", "merchant": "商户", "brand": "品牌", "gas": "加油", "fuel": "燃油", "parking": "停车",
    "toll": "收费", "flow": "流量", "traffic": "车流", "sales": "销售", "sale": "销售", "revenue": "营收",
    "income": "收入", "account": "账户", "card": "卡", "member": "会员", "info": "信息", "detail": "明细",
    "log": "日志", "record": "记录", "stat": "统计", "stats": "统计", "manager": "管理", "mgmt": "管理",
}


# -- column classification (shared by comments, themes and pairs) -------------------------------------------------


def _words(name: str) -> list[str]:
    return [w for w in re.split(r"[_\W]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()) if w]


def _is_numeric(col: ColumnMeta) -> bool:
    return col.udt_name in _NUMERIC_UDT


def _is_text(col: ColumnMeta) -> bool:
    return col.udt_name in _TEXT_UDT or col.type_kind == "enum"


def _is_date(col: ColumnMeta) -> bool:
    return col.udt_name in _DATE_UDT


def _fk_columns(meta: TableMeta) -> set[str]:
    return {c for fk in meta.foreign_keys for c in fk.columns}


def measure_columns(meta: TableMeta) -> list[ColumnMeta]:
    """Numeric columns that measure something (not keys, codes, coordinates or enum-like numbers)."""
    keys = set(meta.primary_key) | _fk_columns(meta)
    result = []
    for col in meta.columns:
        words = _words(col.name)
        if not _is_numeric(col) or col.name in keys or col.is_primary_key or not words:
            continue
        if words[-1] in _NOT_MEASURE_WORDS or words[0] in _NOT_MEASURE_WORDS and len(words) == 1:
            continue
        result.append(col)
    return result


def date_columns(meta: TableMeta) -> list[ColumnMeta]:
    """Date/timestamp columns, business dates first, audit timestamps after, soft-delete markers never."""
    cols = [c for c in meta.columns if _is_date(c) and c.name not in _SOFT_DELETE]
    return sorted(cols, key=lambda c: (c.name.lower() in _AUDIT_TIME, c.ordinal))


def soft_delete_column(meta: TableMeta) -> str | None:
    return next((c.name for c in meta.columns if c.name in _SOFT_DELETE), None)


def label_column(meta: TableMeta, enums: dict[str, list[str]] | None = None) -> ColumnMeta | None:
    """The column that names a row: `name`/`*_name`, else a title-like text column, else an enum column."""
    text_cols = [c for c in meta.columns
                 if _is_text(c) and c.name not in meta.primary_key and c.name.lower() not in _AUDIT_USER]
    for predicate in (
        lambda c: c.name.lower() == "name",
        lambda c: _words(c.name)[-1:] == ["name"],
        lambda c: _words(c.name)[-1:] in (["title"], ["label"]),
        lambda c: c.name in (enums or {}),
    ):
        found = [c for c in text_cols if predicate(c)]
        if found:
            return found[0]
    return None


# -- comments -------------------------------------------------------------------------------------------------


def _compose_zh(words: list[str]) -> str | None:
    parts = [_WORDS_ZH.get(w) for w in words]
    return "".join(parts) if parts and all(parts) else None  # type: ignore[arg-type]


def guess_column_comment(name: str, zh: bool) -> str | None:
    """A comment from the column name alone, or None when the name means nothing known."""
    lowered = name.lower()
    if lowered in _EXACT_COLUMNS:
        return _EXACT_COLUMNS[lowered][0 if zh else 1]
    words = _words(name)
    if not words:
        return None
    last = words[-1]
    if last not in _SUFFIXES:
        if zh:
            return _compose_zh(words)
        return None
    suffix_zh, suffix_en = _SUFFIXES[last]
    prefix = words[:-1]
    if not prefix:
        return suffix_zh if zh else suffix_en[:1].upper() + suffix_en[1:]
    if zh:
        composed = _compose_zh(prefix)
        return f"{composed}{suffix_zh}" if composed else suffix_zh
    text = " ".join(prefix) + " " + suffix_en
    return text[:1].upper() + text[1:]


def guess_table_comment(name: str, zh: bool) -> str | None:
    stem = name.lower()
    for prefix in _TABLE_PREFIXES:
        if stem.startswith(prefix) and len(stem) > len(prefix):
            stem = stem[len(prefix):]
            break
    words = _words(stem)
    if zh:
        return _compose_zh(words)
    text = " ".join(words)
    return text[:1].upper() + text[1:] if text else None


def enum_candidates(meta: TableMeta, samples: list[dict]) -> list[str]:
    """Enum types, enum-like names, and text columns with few distinct values in the samples."""
    keys = set(meta.primary_key) | _fk_columns(meta)
    found = []
    for col in meta.columns:
        if col.name in keys or _is_date(col) or col.name.lower() in _AUDIT_USER:
            continue
        words = _words(col.name)
        if col.type_kind == "enum" or (words and words[-1] in _ENUM_WORDS):
            found.append(col.name)
            continue
        if not _is_text(col) or (words and words[-1] in {"name", "id", "code", "no", "remark", "description"}):
            continue
        values = [row.get(col.name) for row in samples if row.get(col.name) not in (None, "")]
        if len(values) >= 4 and len(set(values)) <= min(10, len(values) // 2):
            found.append(col.name)
    return found


# -- SQL building ---------------------------------------------------------------------------------------------


def _literal(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


@dataclass
class _Table:
    """One table as the templates see it: labels, alias, and the columns worth asking about."""

    doc: TableDoc
    alias: str
    label: str
    zh: bool

    @property
    def meta(self) -> TableMeta:
        return self.doc.meta

    def col_label(self, name: str) -> str:
        comment = self.doc.column_comments.get(name) or (self.meta.column(name) or _NO_COLUMN).comment
        if comment:
            # "状态（1正常 0停用）" -> "状态": the short name reads better inside a question.
            return _one_line(re.split(r"[（(，,；;：:]", comment)[0]) or name
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
    base = "".join(w[0] for w in _words(name)) or "t"
    if not base[0].isalpha():
        base = "t" + base
    alias, n = base, 1
    while alias in taken or quote_ident(alias) != alias:
        n += 1
        alias = f"{base}{n}"
    taken.add(alias)
    return alias


def _table_label(doc: TableDoc, zh: bool) -> str:
    comment = doc.table_comment or doc.meta.comment
    if comment:
        return _one_line(re.split(r"[（(，,；;：:。]", comment)[0]) or doc.meta.ref.name
    return doc.meta.ref.name


def _date_bounds(doc: TableDoc, column: str) -> tuple[str, str] | None:
    days = sorted(
        str(row[column])[:10] for row in doc.samples
        if row.get(column) and re.match(r"^\d{4}-\d{2}-\d{2}", str(row[column]))
    )
    if len(days) < 2 or days[0] == days[-1]:
        return None
    return days[0], days[-1]


Template = tuple[str, str]  # (question, sql)


class _PairBuilder:
    """Question/SQL templates over the real columns of a theme's tables, grouped by kind."""

    KINDS = ("count", "join_top", "trend", "enum_group", "sum", "top", "range", "avg", "join_count",
             "enum_value", "latest", "daily")

    def __init__(self, docs: list[TableDoc], all_docs: list[TableDoc], zh: bool):
        self.zh = zh
        self.taken: set[str] = set()
        self.tables = [self._table(d) for d in docs]
        self.by_ref = {t.meta.ref: t for t in self.tables}
        self.all_by_ref = {d.meta.ref: d for d in all_docs}
        self.kinds: dict[str, list[tuple[int, Template]]] = {k: [] for k in self.KINDS}
        self._current = 0

    def _table(self, doc: TableDoc) -> _Table:
        return _Table(doc=doc, alias=_alias_for(doc.meta.ref.name, self.taken), label=_table_label(doc, self.zh),
                      zh=self.zh)

    def _t(self, zh: str, en: str) -> str:
        return zh if self.zh else en

    def add(self, kind: str, question: str, sql: str) -> None:
        self.kinds[kind].append((self._current, (_one_line(question), _one_line(sql))))

    def build(self) -> list[Template]:
        for position, table in enumerate(self.tables):
            self._current = position
            self._single_table(table)
            self._joins(table)
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
            if meta.column(name) is None or name.lower() in _AUDIT_USER:
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
                         _select("COUNT(*) AS record_count", src, [f"{ec} = {_literal(value)}", *sd]))
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
            bounds = _date_bounds(doc, d.name)
            if bounds:
                start, end = bounds
                cond = f"CAST({dc} AS date) BETWEEN {_literal(start)} AND {_literal(end)}"
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
        for fk in fact.meta.foreign_keys:
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


# -- themes ---------------------------------------------------------------------------------------------------


def _components(docs: list[TableDoc]) -> tuple[list[list[int]], dict[int, set[int]]]:
    index = {(d.meta.ref.schema, d.meta.ref.name): i for i, d in enumerate(docs)}
    edges: dict[int, set[int]] = {i: set() for i in range(len(docs))}
    for i, doc in enumerate(docs):
        for fk in doc.meta.foreign_keys:
            j = index.get((fk.ref_schema, fk.ref_table))
            if j is not None and j != i:
                edges[i].add(j)
                edges[j].add(i)
    seen: set[int] = set()
    components = []
    for start in range(len(docs)):
        if start in seen:
            continue
        stack, component = [start], []
        seen.add(start)
        while stack:
            node = stack.pop()
            component.append(node)
            for nxt in sorted(edges[node]):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        components.append(sorted(component))
    return components, edges


def _split_by_hub(component: list[int], edges: dict[int, set[int]]) -> list[list[int]]:
    """Large clusters become stars: the best-connected table with its direct neighbours, repeatedly."""
    if len(component) <= MAX_THEME_TABLES:
        return [component]
    remaining = set(component)
    groups = []
    while remaining:
        hub = max(sorted(remaining), key=lambda n: len(edges[n] & remaining))
        group = [hub] + sorted(edges[hub] & remaining)[: MAX_THEME_TABLES - 1]
        groups.append(sorted(group))
        remaining -= set(group)
    return groups


def _richness(doc: TableDoc) -> int:
    """How much a table offers to templates: measures, confirmed enums, a date column."""
    return len(measure_columns(doc.meta)) + len(doc.enums) + (1 if date_columns(doc.meta) else 0)


class HeuristicProvider:
    """Deterministic stand-in for an LLM (no network, no randomness). Not intelligent: see the module docstring."""

    name = HEURISTIC_NAME
    kind = "heuristic"  # what wrote its comments (TableDoc.comment_sources); never reported as an LLM

    def __init__(self) -> None:
        self.usage = LLMUsage(provider=self.name)

    def _count_call(self) -> None:
        self.usage.calls += 1

    def suggest_table_comments(self, meta: TableMeta, samples: list[dict], business_context: str) -> CommentSuggestion:
        """Existing comments, plus dictionary meanings of well-known column names; unknown names stay absent."""
        self._count_call()
        zh = is_chinese(business_context)
        comments: dict[str, str] = {}
        for col in meta.columns:
            comment = col.comment or guess_column_comment(col.name, zh)
            if comment:
                comments[col.name] = comment
        return CommentSuggestion(
            table_comment=meta.comment or guess_table_comment(meta.ref.name, zh),
            column_comments=comments,
            enum_candidates=enum_candidates(meta, samples),
        )

    def extract_themes(self, docs: list[TableDoc], business_context: str, count: int) -> list[Theme]:
        """Foreign-key clusters (big ones split by hub table), padded with per-table themes up to `count`."""
        self._count_call()
        if count <= 0 or not docs:
            return []
        zh = is_chinese(business_context)
        components, edges = _components(docs)
        groups = [g for c in components for g in _split_by_hub(c, edges)]
        # Multi-table clusters first (they make the richest questions), then by size, then table order.
        groups.sort(key=lambda g: (-len(g), g[0]))
        themes: list[Theme] = []
        names: set[str] = set()
        for group in groups:
            themes.append(self._theme([docs[i] for i in group], zh, names))
        if len(themes) < count:
            # Per-table themes: tables that did not lead a cluster first (a leader's own theme mostly repeats
            # its cluster's questions), richer tables first, then table order.
            singles = {g[0] for g in groups if len(g) == 1}
            leaders = {docs.index(self._main([docs[i] for i in g])) for g in groups}
            padding = sorted(
                (i for i in range(len(docs)) if i not in singles),
                key=lambda i: (i in leaders, -_richness(docs[i]), i),
            )
            for i in padding[: count - len(themes)]:
                themes.append(self._theme([docs[i]], zh, names))
        return themes[:count]

    @staticmethod
    def _main(members: list[TableDoc]) -> TableDoc:
        """The fact table of a cluster: most outgoing foreign keys, then most measures, then first."""
        return max(members, key=lambda d: (len(d.meta.foreign_keys), len(measure_columns(d.meta)),
                                           -members.index(d)))

    def _theme(self, members: list[TableDoc], zh: bool, names: set[str]) -> Theme:
        main = self._main(members)
        main_label = _table_label(main, zh)
        ordered = [main] + [d for d in members if d is not main]
        topic = f"{main_label}分析" if zh else f"{main_label} analysis"
        if topic in names:
            topic = f"{topic}（{main.meta.ref.name}）" if zh else f"{topic} ({main.meta.ref.name})"
        names.add(topic)
        labels = [_table_label(d, zh) for d in ordered]
        refs = {(fk.ref_schema, fk.ref_table) for d in members for fk in d.meta.foreign_keys}
        entities = [_table_label(d, zh) for d in ordered if (d.meta.ref.schema, d.meta.ref.name) in refs]
        if not entities:
            entities = [main_label]
        metrics = []
        for doc in ordered:
            for col in measure_columns(doc.meta):
                label = doc.column_comments.get(col.name) or col.comment or col.name
                label = _one_line(re.split(r"[（(，,；;：:]", label)[0]) or col.name
                if label not in metrics:
                    metrics.append(label)
        if zh:
            description = f"基于{'、'.join(labels)}的数据，分析{main_label}的记录数量、指标汇总、排名和时间趋势。"
        else:
            description = (f"Counts, totals, rankings and time trends of {main_label}, based on "
                           f"{', '.join(labels)}.")
        return Theme(
            topic_name=topic,
            description=description,
            related_tables=[d.meta.ref.display_name for d in ordered],
            biz_entities=entities,
            biz_metrics=metrics,
        )

    def generate_pairs(self, theme: Theme, docs: list[TableDoc], business_context: str, count: int) -> list[QAPair]:
        """Up to `count` template pairs over the theme's real columns, in a fixed order."""
        self._count_call()
        if count <= 0:
            return []
        theme_docs = select_theme_docs(theme, docs)
        builder = _PairBuilder(theme_docs, docs, is_chinese(business_context))
        return [QAPair(question=q, sql=s) for q, s in builder.build()[:count]]

    def repair_sql(self, requests: list[RepairRequest], docs: list[TableDoc]) -> dict[int, str]:
        """Mechanical fixes only (misspelt column/table names, missing ';'); what it cannot fix is omitted."""
        self._count_call()
        repairs: dict[int, str] = {}
        for request in requests:
            fixed = _repair_one(request.sql, request.error, docs)
            if fixed and fixed != request.sql and is_select_sql(fixed):
                repairs[request.index] = fixed
        return repairs


# -- repair ---------------------------------------------------------------------------------------------------

_MISSING_COLUMN = re.compile(r'column "?(?:(?P<qual>[\w$]+)\.)?(?P<name>[^"\s]+)"? does not exist', re.I)
_MISSING_TABLE = re.compile(r'relation "(?P<name>[^"]+)" does not exist', re.I)


def _closest(name: str, candidates: list[str]) -> str | None:
    exact = [c for c in candidates if c.lower() == name.lower()]
    if exact:
        return exact[0]
    match = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    if not match:
        match = difflib.get_close_matches(name.lower(), [c.lower() for c in candidates], n=1, cutoff=0.6)
        if match:
            return next(c for c in candidates if c.lower() == match[0])
        return None
    return match[0]


def _tables_in_sql(sql: str, docs: list[TableDoc]) -> list[TableDoc]:
    lowered = sql.lower()
    found = [d for d in docs if re.search(rf"(?<![\w$]){re.escape(d.meta.ref.name.lower())}(?![\w$])", lowered)]
    return found or docs


def _replace_identifier(sql: str, old: str, new: str, qualifier: str | None = None) -> str:
    """Replace an identifier (bare or double-quoted; after `qualifier.` when given) with the real, quoted name."""
    head = f"{qualifier}." if qualifier else ""
    prefix = rf'(?:{re.escape(qualifier)}|"{re.escape(qualifier)}")\.' if qualifier else r"(?<![\w$])"
    pattern = re.compile(rf'{prefix}(?:"{re.escape(old)}"|{re.escape(old)})(?![\w$"])')
    return pattern.sub(lambda _m: head + quote_ident(new), sql)


def _repair_one(sql: str, error: str, docs: list[TableDoc]) -> str | None:
    fixed = _one_line(sql)
    column = _MISSING_COLUMN.search(error or "")
    if column:
        name, qual = column.group("name"), column.group("qual")
        candidates = sorted({c.name for d in _tables_in_sql(fixed, docs) for c in d.meta.columns})
        best = _closest(name, candidates)
        if best is None:
            return None
        fixed = _replace_identifier(fixed, name, best, qual)
    table = _MISSING_TABLE.search(error or "")
    if table:
        missing = table.group("name")
        names = {d.meta.ref.name: d for d in docs}
        qualifier, _, bare = missing.rpartition(".")
        best = _closest(bare, sorted(names))
        if best is None:
            return None
        fixed = _replace_identifier(fixed, bare, best, qualifier or None)
    fixed = fixed.rstrip().rstrip(";").rstrip() + ";"
    return fixed
