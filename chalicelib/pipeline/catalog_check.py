"""Generated SQL checked against the introspected catalog before it reaches the database.

PostgreSQL's own parser (pglast, as in `sqltext`) reads the query; every table and column it names is resolved the
way PostgreSQL resolves it: CTE names (recursive ones too), aliases and their column lists, subquery outputs,
LATERAL items, `SELECT` aliases in ORDER BY / GROUP BY, correlated subqueries seeing the outer query, quoted
mixed-case names (exact) and unquoted ones (folded by the parser), schema-qualified names, `*` and `t.*`.
What cannot be known here (a set-returning function's columns, a catalog view) is accepted: the check only
names what is certainly unknown, EXPLAIN stays the judge of the rest.

`unknown_objects(sql, docs)` is what the LLM provider re-asks about and what sql_validation reports before its
EXPLAIN; `date_filters(sql, docs)` lists the comparisons of date/time columns with literals or `CURRENT_DATE`-style
windows, which the empty-range check looks at.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pglast import parser
from pglast.parser import ParseError

from chalicelib.pipeline.models import ColumnMeta, TableDoc

SYSTEM_COLUMNS = frozenset({"ctid", "xmin", "xmax", "cmin", "cmax", "tableoid", "oid"})
CATALOG_SCHEMAS = frozenset({"pg_catalog", "information_schema"})
DATE_TYPES = ("date", "timestamp", "time")  # data_type prefixes of date/time columns
_COMPARISONS = frozenset({"<", "<=", ">", ">=", "="})
_NOW_FUNCTIONS = frozenset({"now", "current_date", "current_timestamp", "localtimestamp", "statement_timestamp",
                            "transaction_timestamp", "clock_timestamp"})
_NOW_VALUES = frozenset({"SVFOP_CURRENT_DATE", "SVFOP_CURRENT_TIMESTAMP", "SVFOP_CURRENT_TIMESTAMP_N",
                         "SVFOP_LOCALTIMESTAMP", "SVFOP_LOCALTIMESTAMP_N"})


@dataclass
class _Relation:
    alias: str | None
    columns: set[str] | None  # None: any column (not known here)
    doc: TableDoc | None = None


@dataclass
class DateFilter:
    """`table.column op value`: `values` are the literal bounds as written (two for BETWEEN), or [] with
    `relative_to_now` for a window on CURRENT_DATE / now()."""

    doc: TableDoc
    column: str
    op: str
    values: list[str] = field(default_factory=list)
    relative_to_now: bool = False


def _names(items: list[Any] | None) -> list[str]:
    return [item.get("String", {}).get("sval", "") for item in items or [] if isinstance(item, dict)]


def _parse(sql: str) -> list[dict[str, Any]] | None:
    try:
        statements = json.loads(parser.parse_sql_json(sql or ""))["stmts"]
    except ParseError:
        return None
    return statements if len(statements) == 1 else None


def is_date_column(column: ColumnMeta) -> bool:
    return column.data_type.lower().startswith(DATE_TYPES)


class _Resolver:
    def __init__(self, docs: list[TableDoc]):
        self.exact = {(d.meta.ref.schema, d.meta.ref.name): d for d in docs}
        self.by_name: dict[str, list[TableDoc]] = {}
        for doc in docs:
            self.by_name.setdefault(doc.meta.ref.name, []).append(doc)
        self.problems: list[str] = []
        self.resolved: dict[int, tuple[TableDoc, str]] = {}  # ColumnRef location -> (table, column)
        self.pending: list[tuple[str, Any, Any]] = []  # comparisons seen, resolved by `date_filters`
        self.looked_up: list[tuple[str | None, str]] = []  # every relation name `table` was asked for

    def problem(self, text: str) -> None:
        if text not in self.problems:
            self.problems.append(text)

    # -- relations ---------------------------------------------------------------------------------------------

    def table(self, schema: str | None, name: str) -> tuple[TableDoc | None, bool]:
        """(doc, known): a catalog relation outside the task's tables is known but not described."""
        self.looked_up.append((schema, name))
        if schema is not None:
            doc = self.exact.get((schema, name))
            return doc, doc is not None or schema in CATALOG_SCHEMAS
        doc = self.exact.get(("public", name))
        if doc is None and len(self.by_name.get(name, [])) == 1:
            doc = self.by_name[name][0]
        return doc, doc is not None or name.startswith("pg_")

    def from_item(self, item: dict[str, Any], scopes: list[list[_Relation]], ctes: dict[str, set[str] | None]
                  ) -> list[_Relation]:
        (kind, node), = item.items()
        alias = node.get("alias") or {}
        renamed = _names(alias.get("colnames"))
        if kind == "RangeVar":
            schema, name = node.get("schemaname"), node.get("relname", "")
            if schema is None and name in ctes:
                columns, doc = ctes[name], None
            else:
                doc, known = self.table(schema, name)
                if not known:
                    self.problem(f"unknown table {schema + '.' if schema else ''}{name}")
                columns = {c.name for c in doc.meta.columns} if doc is not None else None
            if renamed and columns is not None:
                columns = columns | set(renamed)
            return [_Relation(alias.get("aliasname") or name, columns, doc)]
        if kind == "JoinExpr":
            left = self.from_item(node["larg"], scopes, ctes)
            right = self.from_item(node["rarg"], scopes + [left], ctes)
            both = left + right
            if node.get("quals") is not None:
                self.walk(node["quals"], [both] + scopes, ctes)
            if alias.get("aliasname"):
                return both + [_Relation(alias["aliasname"], None)]
            return both
        if kind == "RangeSubselect":
            outputs = self.select(node["subquery"]["SelectStmt"], scopes, ctes)
            columns = set(renamed) | set(outputs) if outputs is not None else None
            return [_Relation(alias.get("aliasname"), columns)]
        if kind == "RangeFunction":
            self.walk(node.get("functions"), scopes, ctes)
            return [_Relation(alias.get("aliasname"), None)]
        self.walk(node, scopes, ctes)
        return [_Relation(alias.get("aliasname"), None)]

    # -- queries -----------------------------------------------------------------------------------------------

    def select(self, node: dict[str, Any], outer: list[list[_Relation]], ctes: dict[str, set[str] | None]
               ) -> list[str] | None:
        """The query's output column names (None when not known), checking everything it names."""
        ctes = dict(ctes)
        with_clause = node.get("withClause") or {}
        for cte in with_clause.get("ctes", []):
            body = cte["CommonTableExpr"]
            name, declared = body["ctename"], _names(body.get("aliascolnames"))
            if with_clause.get("recursive"):
                ctes[name] = set(declared) if declared else None
            query = body.get("ctequery", {})
            outputs = self.select(query["SelectStmt"], outer, ctes) if "SelectStmt" in query else None
            ctes[name] = set(declared) if declared else (set(outputs) if outputs is not None else None)
        if node.get("op", "SETOP_NONE") != "SETOP_NONE":
            outputs = self.select(node["larg"], outer, ctes)
            self.select(node["rarg"], outer, ctes)
            aliases = frozenset(outputs or ())
            self.walk(node.get("sortClause"), [[_Relation(None, set(outputs) if outputs is not None else None)]]
                      + outer, ctes, aliases)
            return outputs
        if node.get("valuesLists"):
            self.walk(node["valuesLists"], outer, ctes)
            first = node["valuesLists"][0].get("List", {}).get("items", [])
            return [f"column{n}" for n in range(1, len(first) + 1)]
        scope: list[_Relation] = []
        for item in node.get("fromClause") or []:
            scope.extend(self.from_item(item, [scope] + outer, ctes))
        scopes = [scope] + outer
        outputs = self.outputs(node.get("targetList") or [], scope)
        for key in ("targetList", "whereClause", "havingClause", "windowClause", "distinctClause", "limitCount",
                    "limitOffset"):
            self.walk(node.get(key), scopes, ctes)
        aliases = frozenset(outputs or ())
        self.walk(node.get("groupClause"), scopes, ctes, aliases)
        self.walk(node.get("sortClause"), scopes, ctes, aliases)
        return outputs

    @staticmethod
    def outputs(targets: list[dict[str, Any]], scope: list[_Relation]) -> list[str] | None:
        names: list[str] = []
        for target in targets:
            res = target.get("ResTarget", {})
            value = res.get("val", {})
            if res.get("name"):
                names.append(res["name"])
            elif "ColumnRef" in value:
                fields = value["ColumnRef"]["fields"]
                if "A_Star" in fields[-1]:
                    qualifier = _names(fields[:-1])
                    chosen = [r for r in scope if not qualifier or r.alias == qualifier[-1]]
                    if any(r.columns is None for r in chosen):
                        return None
                    names += [c for r in chosen for c in sorted(r.columns or ())]
                else:
                    names.append(_names(fields)[-1])
            elif "FuncCall" in value:
                names.append(_names(value["FuncCall"]["funcname"])[-1])
            elif "TypeCast" in value and "ColumnRef" in value["TypeCast"].get("arg", {}):
                names.append(_names(value["TypeCast"]["arg"]["ColumnRef"]["fields"])[-1])
        return names

    # -- expressions -------------------------------------------------------------------------------------------

    def walk(self, node: Any, scopes: list[list[_Relation]], ctes: dict[str, set[str] | None],
             aliases: frozenset[str] = frozenset()) -> None:
        stack: list[tuple[str | None, Any]] = [(None, node)]  # depth first, in the query's order
        while stack:
            key, current = stack.pop()
            if key == "ColumnRef":
                self.column(current, scopes, aliases)
                continue
            if key == "SelectStmt":
                self.select(current, scopes, ctes)
                continue
            if key == "A_Expr":
                self.comparison(current)
            if isinstance(current, list):
                stack.extend((None, item) for item in reversed(current))
            elif isinstance(current, dict):
                stack.extend(reversed(list(current.items())))

    def column(self, ref: dict[str, Any], scopes: list[list[_Relation]], aliases: frozenset[str]) -> None:
        fields = ref.get("fields", [])
        star = bool(fields) and "A_Star" in fields[-1]
        parts = _names(fields[:-1] if star else fields)
        if star:
            if parts and self.relation(parts[-1], scopes) is None:
                self.problem(f"unknown table or alias {parts[-1]} (in {parts[-1]}.*)")
            return
        if not parts or len(parts) > 3:
            return
        name = parts[-1]
        if len(parts) == 1:
            if name in aliases or name in SYSTEM_COLUMNS:
                return
            for scope in scopes:
                for relation in scope:
                    if relation.alias == name:
                        return  # a whole-row reference
                    if relation.columns is None or name in relation.columns:
                        self.remember(ref, relation, name, scope)
                        return
            self.problem(f"unknown column {name}" + self.where(scopes))
            return
        qualifier = parts[-2]
        relation = self.relation(qualifier, scopes)
        if relation is None:
            self.problem(f"unknown table or alias {qualifier} (in {qualifier}.{name})")
        elif relation.columns is not None and name not in relation.columns and name not in SYSTEM_COLUMNS:
            table = relation.doc.meta.ref.display_name if relation.doc else qualifier
            self.problem(f"unknown column {qualifier}.{name} ({table} has no column {name})")
        elif relation.doc is not None:
            self.resolved[ref.get("location", -1)] = (relation.doc, name)

    def remember(self, ref: dict[str, Any], relation: _Relation, name: str, scope: list[_Relation]) -> None:
        owners = [r for r in scope if r.columns is None or name in r.columns]
        if relation.doc is not None and len(owners) == 1:
            self.resolved[ref.get("location", -1)] = (relation.doc, name)

    @staticmethod
    def relation(alias: str, scopes: list[list[_Relation]]) -> _Relation | None:
        for scope in scopes:
            for relation in scope:
                if relation.alias == alias:
                    return relation
        return None

    @staticmethod
    def where(scopes: list[list[_Relation]]) -> str:
        tables = [r.doc.meta.ref.display_name for scope in scopes for r in scope if r.doc is not None]
        return f" (not in {', '.join(dict.fromkeys(tables))})" if tables else ""

    # -- date filters ------------------------------------------------------------------------------------------

    def comparison(self, expr: dict[str, Any]) -> None:
        """Collects `date_column op literal` (either side) and `date_column BETWEEN a AND b` for `date_filters`;
        the columns are resolved after the walk, so the raw nodes are kept."""
        kind, op = expr.get("kind"), (_names(expr.get("name")) or [""])[-1]
        if kind == "AEXPR_OP" and op in _COMPARISONS:
            self.pending.append((op, expr.get("lexpr"), expr.get("rexpr")))
        elif kind == "AEXPR_BETWEEN":
            bounds = expr.get("rexpr", {}).get("List", {}).get("items", [])
            if len(bounds) == 2:
                self.pending.append(("between", expr.get("lexpr"), bounds))


def _literal(node: Any) -> str | None:
    """A string literal (`'2023-01-01'`, `'2023-01-01'::date`, `DATE '2023-01-01'`), else None."""
    if not isinstance(node, dict):
        return None
    if "TypeCast" in node:
        return _literal(node["TypeCast"].get("arg"))
    const = node.get("A_Const", {})
    return const.get("sval", {}).get("sval") if "sval" in const else None


def _relative_to_now(node: Any) -> bool:
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, list):
            stack.extend(current)
        elif isinstance(current, dict):
            if current.get("SQLValueFunction", {}).get("op") in _NOW_VALUES:
                return True
            call = current.get("FuncCall")
            if call and (_names(call.get("funcname")) or [""])[-1] in _NOW_FUNCTIONS:
                return True
            stack.extend(current.values())
    return False


_FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "="}


def _analyse(sql: str, docs: list[TableDoc]) -> _Resolver | None:
    statements = _parse(sql)
    if statements is None or "SelectStmt" not in statements[0]["stmt"]:
        return None
    resolver = _Resolver(docs)
    resolver.select(statements[0]["stmt"]["SelectStmt"], [], {})
    return resolver


def unknown_objects(sql: str, docs: list[TableDoc], *, complete: bool = False) -> list[str]:
    """What `sql` names that the catalog does not have ("unknown table x", "unknown column t.c (…)"), in order
    of discovery; [] when everything resolves, when the SQL does not parse (EXPLAIN reports that) or no docs.
    With `complete`, `docs` are every table `sql` may name even when there are none (a validation batch's docs:
    the tables its pairs name that the task documents), so a table outside them is unknown."""
    if not docs and not complete:
        return []
    resolver = _analyse(sql, docs)
    return list(resolver.problems) if resolver is not None else []


def referenced_relations(sql: str) -> list[tuple[str | None, str]]:
    """(schema or None, name) of every relation the check looks up in the catalog for `sql`, once each, in order
    of discovery (a CTE name read as its CTE is no lookup): the tables whose docs `unknown_objects` and
    `date_filters` need to judge it. [] when it does not parse or is no SELECT (neither then looks)."""
    resolver = _analyse(sql, [])
    return list(dict.fromkeys(resolver.looked_up)) if resolver is not None else []


def date_filters(sql: str, docs: list[TableDoc]) -> list[DateFilter]:
    """The comparisons of a date/time column of a known table with literals or a window on the current date."""
    resolver = _analyse(sql, docs)
    if resolver is None:
        return []
    found: list[DateFilter] = []
    for op, left, right in resolver.pending:
        sides = [(op, left, right)]
        if op != "between":
            sides.append((_FLIPPED[op], right, left))
        for this_op, column_side, value_side in sides:
            ref = column_side.get("ColumnRef") if isinstance(column_side, dict) else None
            target = resolver.resolved.get(ref.get("location", -1)) if ref else None
            if target is None:
                continue
            doc, name = target
            column = doc.meta.column(name)
            if column is None or not is_date_column(column):
                continue
            values = value_side if this_op == "between" else [value_side]
            literals = [_literal(v) for v in values]
            if all(v is not None for v in literals):
                found.append(DateFilter(doc, name, this_op, [v for v in literals if v is not None]))
            elif any(_relative_to_now(v) for v in values):
                found.append(DateFilter(doc, name, this_op, relative_to_now=True))
    return found
