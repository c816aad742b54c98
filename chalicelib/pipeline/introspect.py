"""Bulk catalog introspection: columns, keys, comments and row counts of many tables in a few queries.

The number of catalog queries does not depend on how many tables are asked for (arrays of names are passed
with `unnest`); exact `count(*)` runs only for tables whose estimate is small, batched with `union all`
(500 tables per statement), so 1,000 tables take at most five statements.
"""
from __future__ import annotations

import logging
from typing import Any

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import TRANSACTION_STATUS_IDLE

from chalicelib.pipeline.models import ColumnMeta, ForeignKey, TableMeta, TableRef

logger = logging.getLogger(__name__)

# Relation kinds we document: ordinary, partitioned, views, materialized views, foreign tables.
_DOCUMENTED_KINDS = ("r", "p", "v", "m", "f")
_KIND_NAMES = {"r": "table", "p": "partitioned", "v": "view", "m": "materialized_view", "f": "foreign"}
_SYSTEM_SCHEMAS = ("pg_catalog", "information_schema")
# Tables never analyzed have no estimate; below this many bytes per threshold row, counting is cheap anyway.
_BYTES_PER_ROW_GUESS = 64
# Tables counted per `union all` statement: 1,000 small tables cost two statements.
_COUNT_BATCH = 500

# Row estimates: pg_class.reltuples; for a never-analyzed relation (reltuples < 0) the way the planner guesses,
# pages x tuples per page from the declared column widths (24-byte tuple header + 4-byte line pointer,
# 32 bytes for a variable-length column), so no per-table EXPLAIN is needed.
_RESOLVE_SQL = """
select r.ord, c.oid, c.relkind, obj_description(c.oid, 'pg_class'),
       case when c.oid is null then null else has_table_privilege(c.oid, 'SELECT') end,
       n.oid is not null, st.est, st.unknown, st.size_bytes
  from unnest(%s::text[], %s::text[]) with ordinality as r(schema_name, table_name, ord)
  left join pg_namespace n on n.nspname = r.schema_name
  left join pg_class c on c.relnamespace = n.oid and c.relname = r.table_name and c.relkind = any(%s::"char"[])
  left join lateral (
        select 28 + coalesce(sum(case when t.typlen > 0 then t.typlen else 32 end), 0) as width
          from pg_attribute a
          join pg_type t on t.oid = a.atttypid
         where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
       ) w on c.oid is not null
  left join lateral (
        select coalesce(sum(case when l.reltuples >= 0 then l.reltuples
                                 else floor(pg_relation_size(l.oid)::float8 / bs.size)
                                      * greatest(floor((bs.size - 24)::float8 / w.width), 1) end), 0)::float8 as est,
               coalesce(bool_or(l.reltuples < 0), false) as unknown,
               coalesce(sum(pg_relation_size(l.oid)), 0)::bigint as size_bytes
          from pg_class l
         cross join (select current_setting('block_size')::int as size) bs
         where (l.oid = c.oid and c.relkind <> 'p')
            or l.oid in (select t.relid from pg_partition_tree(c.oid) t where t.isleaf)
       ) st on c.oid is not null
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


def _missing_message(ref: TableRef, schema_exists: bool) -> str:
    if not schema_exists:
        return f'table "{ref.display_name}" does not exist (schema "{ref.schema}" not found)'
    return f'table "{ref.display_name}" does not exist'


def introspect_tables(
    conn: psycopg2.extensions.connection, refs: list[TableRef], *, exact_count_threshold: int
) -> tuple[dict[TableRef, TableMeta], dict[TableRef, str]]:
    """Metadata of every table in `refs` with a constant number of catalog queries.

    Returns (found, errors): errors maps a missing or unreadable table to a clear message.
    When no transaction was open on `conn` before the call, the read transaction(s) it opens are ended
    (rolled back: nothing was written), so no lock on the inspected tables outlives the call.
    """
    own_transaction = not conn.autocommit and conn.info.transaction_status == TRANSACTION_STATUS_IDLE
    try:
        return _introspect(conn, refs, exact_count_threshold, own_transaction)
    finally:
        if own_transaction and not conn.closed:
            conn.rollback()


def _introspect(
    conn: psycopg2.extensions.connection, refs: list[TableRef], exact_count_threshold: int, own_transaction: bool
) -> tuple[dict[TableRef, TableMeta], dict[TableRef, str]]:
    found: dict[TableRef, TableMeta] = {}
    errors: dict[TableRef, str] = {}
    if not refs:
        return found, errors
    refs = list(dict.fromkeys(refs))
    with conn.cursor() as cur:
        cur.execute(
            _RESOLVE_SQL,
            ([r.schema for r in refs], [r.name for r in refs], list(_DOCUMENTED_KINDS)),
        )
        resolved: dict[int, tuple[TableRef, str, str | None, dict[str, Any]]] = {}
        for ord_, oid, relkind, comment, can_select, schema_exists, est, unknown, size_bytes in cur.fetchall():
            ref = refs[ord_ - 1]
            if oid is None:
                errors[ref] = _missing_message(ref, schema_exists)
            elif not can_select:
                errors[ref] = f'permission denied: cannot read table "{ref.display_name}"'
            else:
                stats = {"est": int(est or 0), "unknown": bool(unknown), "size_bytes": int(size_bytes or 0)}
                resolved[oid] = (ref, relkind, comment, stats)
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

    counts = _row_counts(conn, {oid: (v[0], v[1], v[3]) for oid, v in resolved.items()}, exact_count_threshold,
                         own_transaction)
    for oid, (ref, relkind, comment, _stats) in resolved.items():
        pk = primary.get(oid, [])
        cols = columns[oid]
        for col in cols:
            col.is_primary_key = col.name in pk
        row_count, exact = counts[oid]
        found[ref] = TableMeta(
            ref=ref,
            comment=comment if comment and comment.strip() else None,
            kind=_KIND_NAMES.get(relkind, "table"),
            columns=cols,
            primary_key=pk,
            foreign_keys=foreign[oid],
            row_count=row_count,
            row_count_exact=exact,
        )
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
        if relkind in ("v", "f"):  # counting would run the view / scan the remote table
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
    """`schema.table` names of ordinary and partitioned tables (partitions excluded), sorted.

    `schemas` empty means every non-system schema; `pattern` uses `*` as wildcard, case-insensitive.
    """
    like = _like_pattern(pattern.strip()) if pattern and pattern.strip() else None
    schemas = [s.strip() for s in schemas if s and s.strip()]
    with conn.cursor() as cur:
        cur.execute(_LIST_SQL, (list(_SYSTEM_SCHEMAS), schemas, schemas, like, like))
        rows = cur.fetchall()
    return [TableRef(s, n).display_name for s, n in sorted(rows)]
