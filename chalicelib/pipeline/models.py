"""Plain data shared by the steps: table references, introspected metadata, generated docs, Q/A pairs.

Everything here round-trips through JSON (`to_dict` / `from_dict`), because steps hand it to each
other through S3 work files.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

_SIMPLE_IDENT = re.compile(r"^[a-z_][a-z0-9_$]*$")

# PostgreSQL reserved key words that must be quoted when used as identifiers.
_RESERVED = frozenset(
    """all analyse analyze and any array as asc asymmetric authorization binary both case cast check collate
    collation column concurrently constraint create cross current_catalog current_date current_role current_schema
    current_time current_timestamp current_user default deferrable desc distinct do else end except false fetch for
    foreign freeze from full grant group having ilike in initially inner intersect into is isnull join lateral leading
    left like limit localtime localtimestamp natural not notnull null offset on only or order outer overlaps placing
    primary references returning right select session_user similar some symmetric system_user table tablesample then
    to trailing true union unique user using variadic verbose when where window with""".split()
)


def quote_ident(name: str) -> str:
    """Quote an identifier the way PostgreSQL's quote_ident() does: only when needed."""
    if _SIMPLE_IDENT.match(name) and name not in _RESERVED:
        return name
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True, order=True)
class TableRef:
    """A table exactly as PostgreSQL names it (case preserved; `schema` defaults to public)."""

    schema: str
    name: str

    @property
    def display_name(self) -> str:
        """`schema.table`, unquoted, as users write it in table lists."""
        return f"{self.schema}.{self.name}"

    @property
    def sql_name(self) -> str:
        """Safe to interpolate into SQL: each part quoted where needed."""
        return f"{quote_ident(self.schema)}.{quote_ident(self.name)}"

    @property
    def file_stem(self) -> str:
        """File name stem: the bare name in `public`, `schema__name` elsewhere (never collides)."""
        stem = self.name if self.schema == "public" else f"{self.schema}__{self.name}"
        # Keep names portable and inside the task prefix.
        return re.sub(r"[^\w.\-]", "_", stem)

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
    name: str
    columns: list[str]
    ref_schema: str
    ref_table: str
    ref_columns: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ForeignKey:
        return cls(**data)


@dataclass
class TableMeta:
    ref: TableRef
    comment: str | None
    kind: str  # "table" | "partitioned"
    columns: list[ColumnMeta]
    primary_key: list[str]
    foreign_keys: list[ForeignKey]
    row_count: int
    row_count_exact: bool

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
        )


@dataclass
class CommentSuggestion:
    """What an LLM provider proposes for one table. Column keys are matched to real columns by name."""

    table_comment: str | None
    column_comments: dict[str, str] = field(default_factory=dict)
    enum_candidates: list[str] = field(default_factory=list)


@dataclass
class TableDoc:
    """One table after ddl_generation: metadata plus final comments, confirmed enums and samples."""

    meta: TableMeta
    table_comment: str | None
    column_comments: dict[str, str]
    comment_sources: dict[str, str]  # column name (or "" for the table) -> "db" | "llm"
    enums: dict[str, list[str]]  # confirmed enum-like column -> its real distinct values
    samples: list[dict[str, Any]]  # up to N sample rows, values rendered as strings (None kept)

    def to_dict(self) -> dict[str, Any]:
        return {
            "meta": self.meta.to_dict(),
            "table_comment": self.table_comment,
            "column_comments": dict(self.column_comments),
            "comment_sources": dict(self.comment_sources),
            "enums": {k: list(v) for k, v in self.enums.items()},
            "samples": list(self.samples),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TableDoc:
        return cls(
            meta=TableMeta.from_dict(data["meta"]),
            table_comment=data.get("table_comment"),
            column_comments=dict(data.get("column_comments", {})),
            comment_sources=dict(data.get("comment_sources", {})),
            enums={k: list(v) for k, v in data.get("enums", {}).items()},
            samples=list(data.get("samples", [])),
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
