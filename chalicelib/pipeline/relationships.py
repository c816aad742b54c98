"""Relationships no foreign key declares, inferred from naming, types and a bounded look at the data.

Many warehouses declare no foreign key at all (`bss_business_day_data.service_no` holds the codes of
`bss_service_area.service_area_no`, and nothing in the catalog says so). This module finds such single-column
relationships among the task's own tables; they become `ForeignKey(inferred=True, evidence=…)` in
`TableMeta.inferred_keys`, never a constraint.

The rule, for a column `c` of table `T` and a candidate key `k` of another listed table `R`:

1. `k` is a single-column key of `R`: its primary key, a unique constraint or unique index (no predicate, no
   expression), or a natural key by name (`service_area_no` in `bss_service_area`: the column is the table's
   name, less a prefix word, plus `_no` / `_code` / `_id` …, not part of a composite primary key nor itself a
   declared reference). One catalog query reads every such key of the
   task's tables (`load_candidate_keys`), however many tables there are.
2. Naming proposes the pair, strongest first: the same name (`branch_no` ↔ `bss_branch.branch_no`); `x_id` →
   the key of table `x` / `xs` / `prefix_x` (`company_id` → `bss_company.id`); a shared stem with the same key
   word (`service_no` ↔ `service_area_no`); the same column comment (only when one key has it). A column named
   only by a key word (`id`, `code`) proposes nothing, nor a table's own identifier (`customers.customer_id`,
   unless part of a composite primary key); a column a declared foreign key covers is left alone.
3. The types are compatible: the same type, or the same family (integer with integer or numeric, text with
   text, uuid with uuid); anything else is refused before any data is read.
4. The data agrees: up to SAMPLE_VALUES distinct non-null values of `c` (taken from the first SAMPLE_ROWS
   non-null rows, `LIMIT`) are looked up in `k`, in a read-only transaction under a statement timeout of
   CHECK_TIMEOUT_MS. The pair is kept when at least MIN_SAMPLED_VALUES values were sampled, at least
   MIN_HIT_SHARE (90 %) of them are found in `k`, and no value found occurs twice in `k` (so `k` identifies a
   row). A check stopped by the timeout, or failing, keeps nothing (logged).
5. At most MAX_CHECKS data checks per table, within TABLE_BUDGET_SECONDS; per column the best kept candidate
   (highest share, then strongest naming) is the relationship.

The evidence says why in words, in Chinese when the business context is Chinese:
"命名 service_no ↔ bss_service_area.service_area_no；抽样 15 个值中 100% 命中".
"""
from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass, field

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import TRANSACTION_STATUS_IDLE

from chalicelib.pipeline.models import ColumnMeta, ForeignKey, TableMeta, TableRef, quote_ident

logger = logging.getLogger(__name__)

SAMPLE_ROWS = 10_000  # non-null rows of the column read at most (LIMIT)
SAMPLE_VALUES = 200  # distinct values of them looked up in the candidate key
MIN_SAMPLED_VALUES = 3
MIN_HIT_SHARE = 0.9
CHECK_TIMEOUT_MS = 1_000
MAX_CHECKS = 8
TABLE_BUDGET_SECONDS = 6.0

KEY_WORDS = ("id", "no", "code", "key", "sn", "num", "uuid", "guid")
_FAMILIES = {
    "int2": "integer", "int4": "integer", "int8": "integer", "numeric": "integer",
    "varchar": "text", "text": "text", "bpchar": "text", "citext": "text", "name": "text",
    "uuid": "uuid",
}
# The naming rules, strongest first
_RULES = ("same_name", "table_name", "shared_stem", "same_comment")

# Every single-column key candidate of the listed relations: unique indexes (primary keys and unique
# constraints included) and columns whose name ends with a key word (natural keys are picked from those in
# Python). Domains are compared by their base type.
_KEYS_SQL = """
with t as (select * from unnest(%s::text[], %s::text[]) as t(schema_name, table_name)),
rel as (
    select c.oid, n.nspname, c.relname
      from t
      join pg_namespace n on n.nspname = t.schema_name
      join pg_class c on c.relnamespace = n.oid and c.relname = t.table_name and c.relkind in ('r', 'p', 'm')
), uniq as (
    select i.indrelid, i.indkey[0] as attnum, bool_or(i.indisprimary) as is_primary
      from rel
      join pg_index i on i.indrelid = rel.oid
     where i.indisunique and i.indnkeyatts = 1 and i.indpred is null and i.indexprs is null
     group by 1, 2
), refs as (  -- columns that reference something themselves, or are part of a composite primary key
    select f.conrelid as relid, k.attnum
      from rel join pg_constraint f on f.conrelid = rel.oid and f.contype = 'f'
     cross join unnest(f.conkey) k(attnum)
    union
    select p.indrelid, k.attnum
      from rel join pg_index p on p.indrelid = rel.oid and p.indisprimary and p.indnkeyatts > 1
     cross join unnest(p.indkey::int2[]) k(attnum)
)
select rel.nspname, rel.relname, a.attname, ty.typname, coalesce(bt.typname, ty.typname),
       d.description, coalesce(u.is_primary, false), u.indrelid is not null,
       exists (select 1 from refs r where r.relid = rel.oid and r.attnum = a.attnum)
  from rel
  join pg_attribute a on a.attrelid = rel.oid and a.attnum > 0 and not a.attisdropped
  join pg_type ty on ty.oid = a.atttypid
  left join pg_type bt on bt.oid = ty.typbasetype and ty.typtype = 'd'
  left join uniq u on u.indrelid = rel.oid and u.attnum = a.attnum
  left join pg_description d on d.objoid = rel.oid and d.classoid = 'pg_class'::regclass and d.objsubid = a.attnum
 where u.indrelid is not null or lower(a.attname) like any(%s::text[])
 order by 1, 2, a.attnum
"""


def split_words(name: str) -> list[str]:
    """`ServiceAreaNo` / `service_area_no` -> ["service", "area", "no"] (lower case)."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name))
    return [w for w in re.split(r"[_\W]+", spaced.lower()) if w]


def _singular(word: str) -> str:
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ses", "xes", "ches", "shes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


def table_stems(name: str) -> list[tuple[str, ...]]:
    """The stems a column may use to name a table: its words, and its words less one prefix word (`bss_`), the
    last word also in the singular (`companies` -> `company`)."""
    words = split_words(name)
    stems: list[tuple[str, ...]] = []
    for start in range(min(2, len(words))):
        part = words[start:]
        for stem in (tuple(part), (*part[:-1], _singular(part[-1]))):
            if stem and stem not in stems:
                stems.append(stem)
    return stems


def type_family(udt_name: str) -> str:
    return _FAMILIES.get(udt_name, udt_name)


def _comment_key(comment: str | None) -> str:
    return re.sub(r"\s+", "", comment or "").casefold()


@dataclass(frozen=True)
class KeyColumn:
    """One single-column key of a listed relation: `kind` "primary", "unique" or "named" (a natural key by name,
    no constraint)."""

    ref: TableRef
    column: str
    udt_name: str  # as ColumnMeta.udt_name: a domain's own name
    base_udt: str  # a domain's base type, else udt_name
    comment: str | None
    kind: str

    @property
    def words(self) -> list[str]:
        return split_words(self.column)


@dataclass
class KeyIndex:
    """The task's candidate keys, indexed for the naming rules (no loop over tables per column)."""

    keys: list[KeyColumn] = field(default_factory=list)
    by_name: dict[str, list[KeyColumn]] = field(default_factory=dict)
    by_stem: dict[tuple[str, ...], list[KeyColumn]] = field(default_factory=dict)
    by_word: dict[tuple[str, str], list[KeyColumn]] = field(default_factory=dict)  # (key word, first stem word)
    by_comment: dict[str, list[KeyColumn]] = field(default_factory=dict)

    def to_rows(self) -> list[list[str | None]]:
        """Compact JSON form (one list per key), for a work file."""
        return [[k.ref.schema, k.ref.name, k.column, k.udt_name, k.base_udt, k.comment, k.kind] for k in self.keys]

    @classmethod
    def from_rows(cls, rows: list[list[str | None]]) -> KeyIndex:
        index = cls()
        for schema, table, column, udt_name, base_udt, comment, kind in rows:
            index.add(KeyColumn(TableRef(schema, table), column, udt_name, base_udt, comment, kind))
        return index

    def add(self, key: KeyColumn) -> None:
        self.keys.append(key)
        self.by_name.setdefault(key.column.casefold(), []).append(key)
        for stem in table_stems(key.ref.name):
            self.by_stem.setdefault(stem, []).append(key)
        words = key.words
        if len(words) >= 2:
            self.by_word.setdefault((words[-1], words[0]), []).append(key)
        if key.comment and key.comment.strip():
            self.by_comment.setdefault(_comment_key(key.comment), []).append(key)


def _is_natural_key(table: str, column: str) -> bool:
    words = split_words(column)
    return len(words) >= 2 and words[-1] in KEY_WORDS and tuple(words[:-1]) in table_stems(table)


def load_candidate_keys(conn: psycopg2.extensions.connection, refs: list[TableRef]) -> KeyIndex:
    """The single-column keys of `refs` (the task's tables) in one catalog query."""
    index = KeyIndex()
    if not refs:
        return index
    endings = [f"%{word}" for word in KEY_WORDS]
    with conn.cursor() as cur:
        cur.execute(_KEYS_SQL, ([r.schema for r in refs], [r.name for r in refs], endings))
        rows = cur.fetchall()
    if not conn.autocommit and conn.info.transaction_status != TRANSACTION_STATUS_IDLE:
        conn.rollback()  # a catalog read: nothing to keep
    for schema, table, column, udt_name, base_udt, comment, primary, unique, referencing in rows:
        # A natural key by name is never a column that references something itself (a declared foreign key) or a
        # part of a composite primary key (`employee_territories.territory_id`).
        natural = not referencing and _is_natural_key(table, column)
        kind = "primary" if primary else "unique" if unique else "named" if natural else None
        if kind:
            index.add(KeyColumn(TableRef(schema, table), column, udt_name, base_udt or udt_name, comment, kind))
    return index


@dataclass
class Candidate:
    column: ColumnMeta
    key: KeyColumn
    rules: list[str]

    @property
    def strength(self) -> int:
        return min(_RULES.index(r) for r in self.rules)


def _target_name(ref: TableRef, column: str) -> str:
    table = quote_ident(ref.name) if ref.schema == "public" else ref.sql_name
    return f"{table}.{quote_ident(column)}"


def propose(meta: TableMeta, index: KeyIndex) -> list[Candidate]:
    """Naming and type candidates of `meta`'s columns, strongest first (no data read)."""
    covered = {c for fk in meta.foreign_keys for c in fk.columns}
    composite = set(meta.primary_key) if len(meta.primary_key) > 1 else set()
    own_stems = set(table_stems(meta.ref.name))
    found: dict[tuple[str, KeyColumn], Candidate] = {}

    def offer(col: ColumnMeta, key: KeyColumn, rule: str) -> None:
        if key.ref == meta.ref and key.column == col.name:
            return
        if col.udt_name != key.udt_name and type_family(col.udt_name) != type_family(key.base_udt):
            return
        candidate = found.setdefault((col.name, key), Candidate(col, key, []))
        if rule not in candidate.rules:
            candidate.rules.append(rule)

    for col in meta.columns:
        words = split_words(col.name)
        if col.name in covered or len(words) < 2 or col.type_kind == "array":
            continue
        if type_family(col.udt_name) not in ("integer", "text", "uuid") and col.type_kind != "domain":
            continue  # dates, booleans, json …: never keys here (a domain may be one: compared by its name)
        word, stem = words[-1], tuple(words[:-1])
        if word in KEY_WORDS and stem in own_stems and col.name not in composite:
            continue  # the table's own identifier (`customers.customer_id`, `service_area.service_area_no`)
        for key in index.by_name.get(col.name.casefold(), []):
            offer(col, key, "same_name")
        if word in KEY_WORDS:
            for key in index.by_stem.get(stem, []):
                if key.words[-1:] == [word] or (word == "id" and key.kind == "primary"):
                    offer(col, key, "table_name")
            for key in index.by_word.get((word, stem[0]), []):
                other = tuple(key.words[:-1])
                if other != stem and (other[:len(stem)] == stem or stem[:len(other)] == other):
                    offer(col, key, "shared_stem")
        if col.comment and col.comment.strip():
            same = index.by_comment.get(_comment_key(col.comment), [])
            if len(same) == 1:
                offer(col, same[0], "same_comment")
    kinds = {"primary": 0, "unique": 1, "named": 2}
    return sorted(found.values(), key=lambda c: (c.strength, c.key.ref.schema != meta.ref.schema,
                                                 kinds[c.key.kind], c.column.ordinal, c.key.ref, c.key.column))


@dataclass
class CheckResult:
    sampled: int
    found: int
    duplicated: int

    @property
    def share(self) -> float:
        return self.found / self.sampled if self.sampled else 0.0

    @property
    def kept(self) -> bool:
        return self.sampled >= MIN_SAMPLED_VALUES and self.share >= MIN_HIT_SHARE and self.duplicated == 0


def check_candidate(conn: psycopg2.extensions.connection, meta: TableMeta, candidate: Candidate,
                    timeout_ms: int = CHECK_TIMEOUT_MS) -> CheckResult | None:
    """The data check of one candidate, in its own read-only transaction under `timeout_ms` (rolled back); None
    when it was stopped or failed (logged)."""
    col, key = sql.Identifier(candidate.column.name), sql.Identifier(candidate.key.column)
    query = sql.SQL(
        "with sampled as (select distinct v from (select {col} as v from {source} where {col} is not null "
        "limit {rows}) s limit {values}), "
        "found as (select k.{key} as v, count(*) as n from {target} k where k.{key} in (select v from sampled) "
        "group by 1) "
        "select (select count(*) from sampled), count(*), count(*) filter (where n > 1) from found"
    ).format(col=col, source=sql.SQL(meta.ref.sql_name), rows=sql.Literal(SAMPLE_ROWS),
             values=sql.Literal(SAMPLE_VALUES), key=key, target=sql.SQL(candidate.key.ref.sql_name))
    if not conn.autocommit and conn.info.transaction_status != TRANSACTION_STATUS_IDLE:
        raise ValueError("check_candidate needs a connection with no transaction open")
    try:
        with conn.cursor() as cur:
            if conn.autocommit:
                cur.execute("begin read only")
            else:
                cur.execute("set transaction read only")
            cur.execute("select set_config('statement_timeout', %s, true)", (str(int(timeout_ms)),))
            cur.execute(query)
            sampled, found, duplicated = cur.fetchone()
        return CheckResult(int(sampled), int(found), int(duplicated))
    except psycopg2.Error as exc:
        logger.warning("relationship check stopped", extra={
            "table": meta.ref.sql_name, "column": candidate.column.name,
            "candidate": f"{candidate.key.ref.sql_name}.{quote_ident(candidate.key.column)}",
            "timeout_ms": timeout_ms, "error": str(exc).strip()})
        return None
    finally:
        if not conn.closed:
            if conn.autocommit:
                with conn.cursor() as cur:
                    cur.execute("rollback")
            else:
                conn.rollback()


def _naming_text(candidate: Candidate, chinese: bool) -> str:
    col, target = quote_ident(candidate.column.name), _target_name(candidate.key.ref, candidate.key.column)
    parts = []
    rules = candidate.rules
    if "same_name" in rules:  # the other naming rules say nothing more
        rules = [r for r in rules if r not in ("table_name", "shared_stem")]
    for rule in rules:
        if rule == "same_name":
            parts.append(f"同名字段 {col} = {target}" if chinese else f"same name {col} = {target}")
        elif rule == "table_name":
            parts.append(f"命名 {col} → {target}" if chinese else f"naming {col} → {target}")
        elif rule == "shared_stem":
            parts.append(f"命名 {col} ↔ {target}" if chinese else f"naming {col} ↔ {target}")
        else:
            comment = re.sub(r"\s+", " ", candidate.column.comment or "").strip()
            parts.append(f"注释相同（{comment}）" if chinese else f"same comment ({comment})")
    return ("，" if chinese else ", ").join(parts)


def evidence_text(candidate: Candidate, result: CheckResult, chinese: bool) -> str:
    percent = math.floor(100 * result.share)
    if chinese:
        return f"{_naming_text(candidate, True)}；抽样 {result.sampled} 个值中 {percent}% 命中"
    return f"{_naming_text(candidate, False)}; {percent}% of {result.sampled} sampled values found"


def infer_relationships(conn: psycopg2.extensions.connection, meta: TableMeta, index: KeyIndex, *,
                        chinese: bool, timeout_ms: int = CHECK_TIMEOUT_MS, max_checks: int = MAX_CHECKS,
                        budget_seconds: float = TABLE_BUDGET_SECONDS) -> list[ForeignKey]:
    """The relationships of `meta`'s columns to the keys in `index` that naming, types and the data support (the
    module docstring's rule), in column order. `conn` has no transaction open; nothing is written."""
    candidates = propose(meta, index)
    started = time.monotonic()
    best: dict[str, tuple[float, int, Candidate, CheckResult]] = {}
    for checked, candidate in enumerate(candidates):
        if checked >= max_checks or time.monotonic() - started > budget_seconds:
            logger.info("relationship checks capped", extra={
                "table": meta.ref.sql_name, "checked": checked, "candidates": len(candidates),
                "seconds": round(time.monotonic() - started, 3)})
            break
        result = check_candidate(conn, meta, candidate, timeout_ms)
        if result is None or not result.kept:
            continue
        score = (result.share, -candidate.strength)
        name = candidate.column.name
        if name not in best or score > best[name][:2]:
            best[name] = (*score, candidate, result)
    keys = []
    for col in meta.columns:
        if col.name not in best:
            continue
        _share, _strength, candidate, result = best[col.name]
        keys.append(ForeignKey(
            name=f"inferred_{col.name}", columns=[col.name], ref_schema=candidate.key.ref.schema,
            ref_table=candidate.key.ref.name, ref_columns=[candidate.key.column], inferred=True,
            evidence=evidence_text(candidate, result, chinese)))
    return keys
