"""Plain data shared by the steps: table references, introspected metadata, generated docs, Q/A pairs.

Everything here round-trips through JSON (`to_dict` / `from_dict`), because steps hand it to each
other through S3 work files.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from typing import Any

_SIMPLE_IDENT = re.compile(r"^[a-z_][a-z0-9_$]*$")

# PostgreSQL 16's key words that are not "unreserved" (pg_get_keywords() catcode R, C or T): PostgreSQL's own
# quote_ident() quotes them, and so do we.
_KEYWORDS = frozenset(
    """all analyse analyze and any array as asc asymmetric authorization between bigint binary bit boolean both case
    cast char character check coalesce collate collation column concurrently constraint create cross current_catalog
    current_date current_role current_schema current_time current_timestamp current_user dec decimal default
    deferrable desc distinct do else end except exists extract false fetch float for foreign freeze from full grant
    greatest group grouping having ilike in initially inner inout int integer intersect interval into is isnull join
    json_array json_arrayagg json_object json_objectagg lateral leading least left like limit localtime
    localtimestamp national natural nchar none normalize not notnull null nullif numeric offset on only or order out
    outer overlaps overlay placing position precision primary real references returning right row select
    session_user setof similar smallint some substring symmetric system_user table tablesample then time timestamp
    to trailing treat trim true union unique user using values varchar variadic verbose when where window with
    xmlattributes xmlconcat xmlelement xmlexists xmlforest xmlnamespaces xmlparse xmlpi xmlroot xmlserialize
    xmltable""".split()
)
# A file stem part that needs no disambiguation: lower case letters and digits, single inner underscores.
_READABLE_STEM_PART = re.compile(r"^[a-z0-9]+(?:_[a-z0-9]+)*$")
_STEM_HASH_CHARS = 10
_STEM_MAX_CHARS = 60


def quote_ident(name: str) -> str:
    """Quote an identifier the way PostgreSQL's quote_ident() does: only when needed (upper case, a leading digit,
    characters other than a-z 0-9 _ $, a key word)."""
    if _SIMPLE_IDENT.match(name) and name not in _KEYWORDS:
        return name
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True, order=True)
class TableRef:
    """A relation exactly as the catalog names it (case preserved; `schema` defaults to public)."""

    schema: str
    name: str

    @property
    def sql_name(self) -> str:
        """`schema.table`, each part quoted where PostgreSQL needs it: safe in SQL, and read back literally by the
        table-list parser (`public.bss_company`, `public."SalesOrder"`, `public."2019"`)."""
        return f"{quote_ident(self.schema)}.{quote_ident(self.name)}"

    @property
    def display_name(self) -> str:
        """The name the API shows and logs: the same as `sql_name`, so that any name shown can be given back."""
        return self.sql_name

    @property
    def file_stem(self) -> str:
        """File name stem, distinct for distinct relations, even on a case-insensitive file system.

        `name` in public and `schema__name` elsewhere when every part is lower case letters and digits with single
        inner underscores (`bss_company`, `ods__orders`); any other name gets a file-safe approximation plus a
        hash of the exact name (`SalesOrder-1f3a…`): a `-` never occurs in the plain form, so the two never meet.
        """
        if _READABLE_STEM_PART.match(self.name) and (
                self.schema == "public" or _READABLE_STEM_PART.match(self.schema)):
            return self.name if self.schema == "public" else f"{self.schema}__{self.name}"
        text = self.name if self.schema == "public" else f"{self.schema}__{self.name}"
        readable = re.sub(r"[^\w]+", "_", text).strip("_")[:_STEM_MAX_CHARS] or "table"
        digest = hashlib.sha256(f"{self.schema}\x00{self.name}".encode()).hexdigest()[:_STEM_HASH_CHARS]
        return f"{readable}-{digest}"

    def to_dict(self) -> dict[str, str]:
        return {"schema": self.schema, "name": self.name}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TableRef:
        return cls(schema=data["schema"], name=data["name"])


@dataclass
class ColumnMeta:
    name: str
    data_type: str  # exactly as format_type() prints it: "character varying(32)", "numeric(10,2)", "integer[]"
    udt_name: str  # the base type's name: "varchar", "numeric", "_int4", "mood" (an enum), "positive_int" (domain)
    type_kind: str  # "base" | "enum" | "domain" | "array" | "composite" | "range" | "other"
    max_length: int | None
    nullable: bool
    default: str | None
    comment: str | None  # existing database comment (None when absent)
    is_primary_key: bool = False
    enum_values: list[str] | None = None  # labels of a PostgreSQL enum type, in sort order
    ordinal: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColumnMeta:
        return cls(**data)


@dataclass
class ForeignKey:
    """A relationship from `columns` to `ref_schema.ref_table(ref_columns)`: declared in the catalog, or inferred
    (`inferred=True`) from naming, types and a data check, with that `evidence` in words. An inferred one is never
    rendered as a constraint."""

    name: str
    columns: list[str]
    ref_schema: str
    ref_table: str
    ref_columns: list[str]
    inferred: bool = False
    evidence: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ForeignKey:
        return cls(**data)


@dataclass
class TableMeta:
    ref: TableRef
    comment: str | None
    kind: str  # "table" | "partitioned" | "view" | "materialized_view" | "foreign"
    columns: list[ColumnMeta]
    primary_key: list[str]
    foreign_keys: list[ForeignKey]
    row_count: int
    row_count_exact: bool
    definition: str | None = None  # a view's or materialized view's query (pg_get_viewdef)
    # Relationships no constraint declares, found by chalicelib.pipeline's inference (ForeignKey.inferred=True)
    inferred_keys: list[ForeignKey] = field(default_factory=list)

    @property
    def relationships(self) -> list[ForeignKey]:
        """Declared foreign keys, then inferred ones: what themes, joins and prompts follow."""
        return [*self.foreign_keys, *self.inferred_keys]

    @property
    def is_view(self) -> bool:
        return self.kind in ("view", "materialized_view")

    def column(self, name: str) -> ColumnMeta | None:
        return next((c for c in self.columns if c.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref.to_dict(),
            "comment": self.comment,
            "kind": self.kind,
            "columns": [c.to_dict() for c in self.columns],
            "primary_key": list(self.primary_key),
            "foreign_keys": [f.to_dict() for f in self.foreign_keys],
            "row_count": self.row_count,
            "row_count_exact": self.row_count_exact,
            "definition": self.definition,
            "inferred_keys": [f.to_dict() for f in self.inferred_keys],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TableMeta:
        return cls(
            ref=TableRef.from_dict(data["ref"]),
            comment=data.get("comment"),
            kind=data.get("kind", "table"),
            columns=[ColumnMeta.from_dict(c) for c in data["columns"]],
            primary_key=list(data.get("primary_key", [])),
            foreign_keys=[ForeignKey.from_dict(f) for f in data.get("foreign_keys", [])],
            row_count=int(data.get("row_count", 0)),
            row_count_exact=bool(data.get("row_count_exact", False)),
            definition=data.get("definition"),
            inferred_keys=[ForeignKey.from_dict(f) for f in data.get("inferred_keys", [])],
        )


@dataclass
class CommentSuggestion:
    """What an LLM provider proposes for one table. Column keys are matched to real columns by name."""

    table_comment: str | None
    column_comments: dict[str, str] = field(default_factory=dict)
    enum_candidates: list[str] = field(default_factory=list)


COMMENT_SOURCES = ("database", "llm", "heuristic")
_LEGACY_SOURCES = {"db": "database"}  # work files written before the sources were named exactly


@dataclass
class TableDoc:
    """One table after ddl_generation: metadata plus final comments, confirmed enums and samples."""

    meta: TableMeta
    table_comment: str | None
    column_comments: dict[str, str]
    # column name (or "" for the table) -> COMMENT_SOURCES: who wrote the comment that was kept
    comment_sources: dict[str, str]
    enums: dict[str, list[str]]  # confirmed enum-like column -> its real distinct values
    samples: list[dict[str, Any]]  # up to N sample rows, values rendered as strings (None kept)
    # column -> up to a few distinct real values (rendered as strings), for prompts, questions and filters
    column_values: dict[str, list[str]] = field(default_factory=dict)
    # column -> [min, max] (rendered as strings) for date/time and numeric columns: where the data lies
    value_ranges: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "meta": self.meta.to_dict(),
            "table_comment": self.table_comment,
            "column_comments": dict(self.column_comments),
            "comment_sources": dict(self.comment_sources),
            "enums": {k: list(v) for k, v in self.enums.items()},
            "samples": list(self.samples),
            "column_values": {k: list(v) for k, v in self.column_values.items()},
            "value_ranges": {k: list(v) for k, v in self.value_ranges.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TableDoc:
        return cls(
            meta=TableMeta.from_dict(data["meta"]),
            table_comment=data.get("table_comment"),
            column_comments=dict(data.get("column_comments", {})),
            comment_sources={k: _LEGACY_SOURCES.get(v, v) for k, v in data.get("comment_sources", {}).items()},
            enums={k: list(v) for k, v in data.get("enums", {}).items()},
            samples=list(data.get("samples", [])),
            column_values={k: list(v) for k, v in data.get("column_values", {}).items()},
            value_ranges={k: list(v) for k, v in data.get("value_ranges", {}).items()},
        )


@dataclass
class Theme:
    topic_name: str
    description: str
    related_tables: list[str]
    biz_entities: list[str] = field(default_factory=list)
    biz_metrics: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Theme:
        return cls(
            topic_name=str(data["topic_name"]),
            description=str(data.get("description", "")),
            related_tables=[str(t) for t in data.get("related_tables", [])],
            biz_entities=[str(t) for t in data.get("biz_entities", [])],
            biz_metrics=[str(t) for t in data.get("biz_metrics", [])],
        )


@dataclass
class QAPair:
    question: str
    sql: str

    def to_dict(self) -> dict[str, str]:
        return {"question": self.question, "sql": self.sql}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QAPair:
        return cls(question=str(data["question"]), sql=str(data["sql"]))


@dataclass
class RepairRequest:
    index: int  # position of the pair in the pair file
    question: str
    sql: str
    error: str  # PostgreSQL's exact error message
    attempts: list[dict[str, Any]] = field(default_factory=list)  # [{sql, error}] tried before `sql`, oldest first


@dataclass
class LLMUsage:
    """What a provider spent: recorded per step in the task status."""

    provider: str
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    retries: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
