"""Database tools: list a database's tables and document one table on the fly (nothing is written)."""
from __future__ import annotations

from contextlib import closing
from typing import Any

from chalicelib.api.models import DatabaseTablesRequest, TableDdlRequest
from chalicelib.config import get_settings
from chalicelib.errors import InvalidConnectionString, InvalidTableName, NotFound, ValidationError
from chalicelib.pipeline import db, ddl, introspect, tablelist
from chalicelib.providers.factory import get_llm_provider


def _connection_url(body: DatabaseTablesRequest | TableDdlRequest) -> str:
    url = body.db_connection or get_settings().db_url
    if not url:
        raise InvalidConnectionString("no db_connection given and no default database configured",
                                      invalid_params=["db_connection"])
    return url


def list_database_tables(body: DatabaseTablesRequest) -> dict[str, Any]:
    """`schema` is a comma list ("public,ods"); `table_name_pattern` uses `*` as wildcard."""
    url = _connection_url(body)
    schemas, pattern = body.schemas, body.table_name_pattern
    with closing(db.connect(url)) as conn:
        tables = introspect.list_tables(conn, schemas, pattern)
    return {"tables": tables, "total": len(tables), "schemas": schemas, "table_name_pattern": pattern,
            "db_connection_info": {"database": db.database_name(url)}}


def get_table_ddl(body: TableDdlRequest) -> dict[str, Any]:
    """DDL and/or Markdown of one table (or view), with comments from the database or the configured provider;
    `generation_info` says which source wrote the comments kept (`has_llm_comments` only for a real LLM)."""
    settings = get_settings()
    url = _connection_url(body)
    output, business_context = body.type, body.business_context or ""
    refs = tablelist.parse_table_names([body.table])
    if len(refs) != 1:
        raise ValidationError("table must name exactly one table", invalid_params=["table"])
    llm = get_llm_provider(settings)
    with closing(db.connect(url)) as conn:
        found, problems = introspect.introspect_tables(conn, refs,
                                                       exact_count_threshold=settings.exact_count_threshold)
        if refs[0] not in found:
            problem = problems.get(refs[0])
            if problem is not None and problem.kind == "ambiguous":
                raise InvalidTableName(str(problem), invalid_params=["table"])
            raise NotFound(str(problem) if problem else f"table {refs[0].text} not found", invalid_params=["table"])
        doc = ddl.build_table_doc(conn, found[refs[0]], llm, business_context, sample_limit=settings.sample_rows,
                                  enum_max_distinct=settings.enum_max_distinct)
    sources = ddl.count_comment_sources(doc)
    return {
        "ddl": ddl.render_ddl(doc, business_context) if output in ("ddl", "both") else None,
        "md": ddl.render_md(doc, business_context) if output in ("md", "both") else None,
        "table_info": ddl.table_info(doc),
        "fields": ddl.fields(doc),
        "generation_info": {"business_context": business_context, "output_type": output,
                            "has_llm_comments": "llm" in sources,
                            "comment_sources": sources,
                            "llm_provider": getattr(llm, "name", None), "comment_provider": ddl.provider_kind(llm),
                            "database": db.database_name(url)},
    }
