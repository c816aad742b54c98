"""Bulk catalog introspection: columns, keys, comments and row counts of many tables in a few queries.

The number of catalog queries does not depend on how many tables are asked for (arrays of names are passed
with `unnest`); the first one also resolves the written names (chalicelib.pipeline.names: exact, then folded,
ambiguity reported); exact `count(*)` runs only for tables whose estimate is small, batched with `union all`
(500 tables per statement), so 1,000 tables take at most five statements. Views are never counted.
"""
from __future__ import annotations

import logging
from typing import Any

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import TRANSACTION_STATUS_IDLE

from chalicelib.pipeline.models import ColumnMeta, ForeignKey, TableMeta, TableRef
from chalicelib.pipeline.names import (
    TableName,
    TableProblem,
    ambiguous_problem,
    as_table_name,
    forbidden_problem,
    missing_problem,
)

logger = logging.getLogger(__name__)

# Relation kinds we document: ordinary, partitioned, views, materialized views, foreign tables.
_DOCUMENTED_KINDS = ("r", "p", "v", "m", "f")
_KIND_NAMES = {"r": "table", "p": "partitioned", "v": "view", "m": "materialized_view", "f": "foreign"}
_SYSTEM_SCHEMAS = ("pg_catalog", "information_schema")
# Tables never analyzed have no estimate; below this many bytes per threshold row, counting is cheap anyway.
_BYTES_PER_ROW_GUESS = 64
# Tables counted per `union all` statement: 1,000 small tables cost two statements.
_COUNT_BATCH = 500

# One statement resolves every written name (chalicelib.pipeline.names: each part's exact spelling and, for an
# unquoted part, its folding) and reads the stats of the relations that resolved to exactly one match; names
# that match nothing look for relations differing only in case (only those: a one-time filter per name).
# Row estimates: pg_class.reltuples (of the relation, or of a partitioned table's leaves), read by index lookups:
# never an `OR` or a merge join that would scan pg_class or pg_type once per name (`offset 0` keeps the type
# lookup a nested loop). For a never-analyzed relation (reltuples < 0) the estimate is the planner's guess,
# pages x tuples per page from the declared column widths (24-byte tuple header + 4-byte line pointer,
# 32 bytes for a variable-length column), so no per-table EXPLAIN is needed.
_RESOLVE_SQL = """
with r as (
    select * from unnest(%(schema_exact)s::text[], %(schema_folded)s::text[], %(name_exact)s::text[],
                         %(name_folded)s::text[]) with ordinality as r(schema_exact, schema_folded, name_exact,
                                                                       name_folded, ord)
), matched as (
    select r.ord, count(c.oid) as matches, min(c.oid) as oid,
           array_agg(n.nspname::text order by n.nspname, c.relname) as schemas,
           array_agg(c.relname::text order by n.nspname, c.relname) as names
      from r
      join pg_namespace n on n.nspname = any(array[r.schema_exact, r.schema_folded])
      join pg_class c on c.relnamespace = n.oid and c.relname = any(array[r.name_exact, r.name_folded])
                     and c.relkind = any(%(kinds)s::"char"[])
     group by r.ord
)
select r.ord, c.oid, c.relkind, obj_description(c.oid, 'pg_class'),
       case when c.oid is null then null else has_table_privilege(c.oid, 'SELECT') end,
       exists (select 1 from pg_namespace n where n.nspname = any(array[r.schema_exact, r.schema_folded])),
       st.est, st.unknown, st.size_bytes,
       coalesce(m.matches, 0), m.schemas, m.names, lookalike.schemas, lookalike.names,
       case when c.relkind in ('v', 'm') then pg_get_viewdef(c.oid) end
  from r
  left join matched m on m.ord = r.ord
  left join pg_class c on c.oid = m.oid and m.matches = 1
  left join lateral (
        select 28 + coalesce(sum(case when t.typlen > 0 then t.typlen else 32 end), 0) as width
          from pg_attribute a
         cross join lateral (select t.typlen from pg_type t where t.oid = a.atttypid offset 0) t
         where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
       ) w on c.oid is not null
  left join lateral (
        select coalesce(sum(case when l.reltuples >= 0 then l.reltuples
                                 else floor(pg_relation_size(l.oid)::float8 / bs.size)
                                      * greatest(floor((bs.size - 24)::float8 / w.width), 1) end), 0)::float8 as est,
               coalesce(bool_or(l.reltuples < 0), false) as unknown,
               coalesce(sum(pg_relation_size(l.oid)), 0)::bigint as size_bytes
          from (select l.oid, l.reltuples from pg_class l where l.oid = c.oid and c.relkind <> 'p'
                union all
                select t.relid::oid, (select p.reltuples from pg_class p where p.oid = t.relid)
                  from pg_partition_tree(c.oid) t
                 where t.isleaf and c.relkind = 'p') l
         cross join (select current_setting('block_size')::int as size) bs
       ) st on c.oid is not null
  left join lateral (
        select array_agg(n2.nspname::text order by n2.nspname, c2.relname) as schemas,
               array_agg(c2.relname::text order by n2.nspname, c2.relname) as names
          from pg_class c2
          join pg_namespace n2 on n2.oid = c2.relnamespace
         where m.ord is null and lower(c2.relname) = lower(r.name_exact)
           and lower(n2.nspname) = lower(r.schema_exact) and c2.relkind = any(%(kinds)s::"char"[])
       ) lookalike on true
 order by r.ord
"""

_COLUMNS_SQL = """
select a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod), t.typname, t.typtype, t.typcategory,
       a.attnotnull,
       case when a.attidentity = '' and a.attgenerated = '' then pg_get_expr(d.adbin, d.adrelid) end,
       col_description(a.attrelid, a.attnum),
       case when t.typtype = 'e' then
            (select array_agg(e.enumlabel::text order by e.enumsortorder) from pg_enum e where e.enumtypid = t.oid)
       end,
       a.atttypmod, bt.typname, t.typtypmod
  from pg_attribute a
  join pg_type t on t.oid = a.atttypid
  left join pg_type bt on bt.oid = t.typbasetype
  left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
 where a.attrelid = any(%s::oid[]) and a.attnum > 0 and not a.attisdropped
 order by a.attrelid, a.attnum
"""

# Foreign keys on partitioned tables are also cloned per partition of the *referenced* table
# (same conrelid, conparentid set): those copies are skipped.
_CONSTRAINTS_SQL = """
select con.conrelid, con.contype, con.conname,
       array(select a.attname::text
               from unnest(con.conkey) with ordinality k(attnum, ord)
               join pg_attribute a on a.attrelid = con.conrelid and a.attnum = k.attnum
              order by k.ord),
       fn.nspname, fc.relname,
       array(select a.attname::text
               from unnest(con.confkey) with ordinality k(attnum, ord)
               join pg_attribute a on a.attrelid = con.confrelid and a.attnum = k.attnum
              order by k.ord)
  from pg_constraint con
  left join pg_class fc on fc.oid = con.confrelid
  left join pg_namespace fn on fn.oid = fc.relnamespace
 where con.conrelid = any(%s::oid[]) and con.contype in ('p', 'f')
   and not exists (select 1 from pg_constraint p where p.oid = con.conparentid and p.conrelid = con.conrelid)
 order by con.conrelid, con.contype, con.conname
"""

_LIST_SQL = """
select n.nspname, c.relname
  from pg_class c
  join pg_namespace n on n.oid = c.relnamespace
 where c.relkind in ('r', 'p') and not c.relispartition
   and n.nspname <> all(%s::text[])
   and n.nspname not like 'pg\\_toast%%' and n.nspname not like 'pg\\_temp\\_%%'
   and (cardinality(%s::text[]) = 0 or n.nspname = any(%s::text[]))
   and (%s::text is null or c.relname ilike %s)
"""


def _type_kind(typtype: str, typcategory: str) -> str:
    if typtype == "e":
        return "enum"
    if typtype == "d":
        return "domain"
    if typtype == "c":
        return "composite"
    if typtype in ("r", "m"):
        return "range"
    if typtype == "b":
        return "array" if typcategory == "A" else "base"
    return "other"


def _max_length(typname: str, atttypmod: int, base_typname: str | None, domain_typmod: int) -> int | None:
    if typname in ("varchar", "bpchar") and atttypmod > 4:
        return atttypmod - 4
    if base_typname in ("varchar", "bpchar") and domain_typmod > 4:
        return domain_typmod - 4
    return None


def _column_from_row(row: tuple[Any, ...], ordinal: int) -> ColumnMeta:
    (_, name, data_type, typname, typtype, typcategory, notnull, default, comment, enum_labels,
     atttypmod, base_typname, domain_typmod) = row
    return ColumnMeta(
        name=name,
        data_type=data_type,
        udt_name=typname,
        type_kind=_type_kind(typtype, typcategory),
        max_length=_max_length(typname, atttypmod, base_typname, domain_typmod),
        nullable=not notnull,
        default=default,
        comment=comment if comment and comment.strip() else None,
        enum_values=list(enum_labels) if enum_labels is not None else None,
        ordinal=ordinal,
    )


def introspect_tables(
    conn: psycopg2.extensions.connection, names: list[TableName | TableRef], *, exact_count_threshold: int
) -> tuple[dict[TableName | TableRef, TableMeta], dict[TableName | TableRef, TableProblem]]:
    """Metadata of every named relation with a constant number of catalog queries.

    `names` are written names (TableName, resolved by chalicelib.pipeline.names' rule) or catalog names
    (TableRef, taken literally). Returns (found, problems), both keyed by the items given: found[item].ref is
    the catalog's exact name; problems maps a missing, ambiguous or unreadable name to a TableProblem (a
    message with a `kind`). When no transaction was open on `conn` before the call, the read transaction(s) it
    opens are ended (rolled back: nothing was written), so no lock on the inspected tables outlives the call.
    """
    own_transaction = not conn.autocommit and conn.info.transaction_status == TRANSACTION_STATUS_IDLE
    try:
        return _introspect(conn, names, exact_count_threshold, own_transaction)
    finally:
        if own_transaction and not conn.closed:
            conn.rollback()


def _resolve_params(names: list[TableName]) -> dict[str, Any]:
    schema_exact, schema_folded, name_exact, name_folded = [], [], [], []
    for name in names:
        exact, folded = name.schema_candidates()
        schema_exact.append(exact)
        schema_folded.append(folded)
        exact, folded = name.name_candidates()
        name_exact.append(exact)
        name_folded.append(folded)
    return {"schema_exact": schema_exact, "schema_folded": schema_folded, "name_exact": name_exact,
            "name_folded": name_folded, "kinds": list(_DOCUMENTED_KINDS)}


def _refs(schemas: list[str] | None, names: list[str] | None) -> list[TableRef]:
    return [TableRef(s, n) for s, n in zip(schemas or [], names or [], strict=True)]


def _introspect(
    conn: psycopg2.extensions.connection, items: list[TableName | TableRef], exact_count_threshold: int,
    own_transaction: bool
) -> tuple[dict[TableName | TableRef, TableMeta], dict[TableName | TableRef, TableProblem]]:
    found: dict[TableName | TableRef, TableMeta] = {}
    errors: dict[TableName | TableRef, TableProblem] = {}
    items = list(dict.fromkeys(items))
    if not items:
        return found, errors
    written = [as_table_name(item) for item in items]
    with conn.cursor() as cur:
        cur.execute(_RESOLVE_SQL, _resolve_params(written))
        # oid -> (the items naming it, catalog name, relkind, comment, stats, view definition)
        resolved: dict[int, tuple[list[TableName | TableRef], TableRef, str, str | None, dict[str, Any], str | None]]
        resolved = {}
        for (ord_, oid, relkind, comment, can_select, schema_exists, est, unknown, size_bytes, matches,
             schemas, names, similar_schemas, similar_names, definition) in cur.fetchall():
            item, name = items[ord_ - 1], written[ord_ - 1]
            if matches > 1:
                errors[item] = ambiguous_problem(name, _refs(schemas, names))
            elif oid is None:
                errors[item] = missing_problem(name, schema_exists, _refs(similar_schemas, similar_names))
            elif not can_select:
                errors[item] = forbidden_problem(TableRef(schemas[0], names[0]))
            elif oid in resolved:  # two spellings of one relation (`SalesOrder` and `"SalesOrder"`)
                resolved[oid][0].append(item)
            else:
                stats = {"est": int(est or 0), "unknown": bool(unknown), "size_bytes": int(size_bytes or 0)}
                resolved[oid] = ([item], TableRef(schemas[0], names[0]), relkind, comment, stats, definition)
        if not resolved:
            return found, errors
        oids = list(resolved)

        cur.execute(_COLUMNS_SQL, (oids,))
        columns: dict[int, list[ColumnMeta]] = {oid: [] for oid in oids}
        for row in cur.fetchall():
            cols = columns[row[0]]
            cols.append(_column_from_row(row, len(cols) + 1))

        cur.execute(_CONSTRAINTS_SQL, (oids,))
        primary: dict[int, list[str]] = {}
        foreign: dict[int, list[ForeignKey]] = {oid: [] for oid in oids}
        for relid, contype, conname, cols, ref_schema, ref_table, ref_cols in cur.fetchall():
            if contype == "p":
                primary[relid] = list(cols)
            else:
                foreign[relid].append(ForeignKey(conname, list(cols), ref_schema, ref_table, list(ref_cols)))

    counts = _row_counts(conn, {oid: (v[1], v[2], v[4]) for oid, v in resolved.items()}, exact_count_threshold,
                         own_transaction)
    for oid, (named_by, ref, relkind, comment, _stats, definition) in resolved.items():
        pk = primary.get(oid, [])
        cols = columns[oid]
        for col in cols:
            col.is_primary_key = col.name in pk
        row_count, exact = counts[oid]
        meta = TableMeta(
            ref=ref,
            comment=comment if comment and comment.strip() else None,
            kind=_KIND_NAMES.get(relkind, "table"),
            columns=cols,
            primary_key=pk,
            foreign_keys=foreign[oid],
            row_count=row_count,
            row_count_exact=exact,
            definition=definition,
        )
        for item in named_by:
            found[item] = meta
    return found, errors


def _row_counts(
    conn: psycopg2.extensions.connection,
    tables: dict[int, tuple[TableRef, str, dict[str, Any]]],
    threshold: int,
    own_transaction: bool = True,
) -> dict[int, tuple[int, bool]]:
    """(row_count, exact) per table: the catalog estimate, or count(*) when the table is known to be small.

    Small tables are counted `_COUNT_BATCH` at a time in one `union all` statement; the locks a batch takes
    are released (the transaction ended) before the next, so a thousand tables never hold a thousand locks.
    """
    result: dict[int, tuple[int, bool]] = {}
    to_count: list[int] = []
    for oid, (_ref, relkind, stats) in tables.items():
        if relkind in ("v", "f"):  # counting would run the view / scan the remote table: never done
            result[oid] = (0, False)
            continue
        result[oid] = (stats["est"], False)
        if stats["unknown"]:
            small = stats["size_bytes"] <= threshold * _BYTES_PER_ROW_GUESS
        else:
            small = stats["est"] < threshold
        if small:
            to_count.append(oid)

    for start in range(0, len(to_count), _COUNT_BATCH):
        batch = to_count[start:start + _COUNT_BATCH]
        query = sql.SQL(" union all ").join(
            sql.SQL("select {}::int, count(*) from {}").format(sql.Literal(i), sql.SQL(tables[oid][0].sql_name))
            for i, oid in enumerate(batch)
        )
        try:
            with conn.cursor() as cur:
                cur.execute(query)
                for i, count in cur.fetchall():
                    result[batch[i]] = (int(count), True)
        except psycopg2.Error as exc:
            if not conn.autocommit and not conn.closed:
                conn.rollback()
            logger.warning("exact row count failed; keeping estimates", extra={"error": str(exc).strip()})
        else:
            if own_transaction:
                conn.rollback()  # release this batch's table locks before the next batch
    return result


def _like_pattern(pattern: str) -> str:
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


def list_tables(conn: psycopg2.extensions.connection, schemas: list[str], pattern: str | None) -> list[str]:
    """`schema.table` names of ordinary and partitioned tables (partitions excluded), sorted, each quoted where
    PostgreSQL needs it (`public."SalesOrder"`), so that every name listed is accepted back as it is.

    `schemas` empty means every non-system schema; `pattern` uses `*` as wildcard, case-insensitive.
    """
    like = _like_pattern(pattern.strip()) if pattern and pattern.strip() else None
    schemas = [s.strip() for s in schemas if s and s.strip()]
    with conn.cursor() as cur:
        cur.execute(_LIST_SQL, (list(_SYSTEM_SCHEMAS), schemas, schemas, like, like))
        rows = cur.fetchall()
    return [TableRef(s, n).sql_name for s, n in sorted(rows)]
