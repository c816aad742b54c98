"""training_load: DDL, documentation sections and Q/A pairs into pgvector, in the layout LangChain's PGVector
(and so Vanna's pgvector store) reads: `langchain_pg_collection` + `langchain_pg_embedding`.

Both LangChain layouts are written (see vector_layout): the one already in the database, or, when there is
none, the langchain_postgres/Vanna one. Ids are deterministic (uuid5 of collection + content, with Vanna's
`-ddl`/`-doc`/`-sql` suffix). A row is skipped, and never embedded, when its id is stored already or when
its collection already holds the same document, whoever wrote it (Vanna's own `train()`, an earlier load),
so loading the same data twice adds no rows. Documents are written exactly as Vanna writes them.

Every row records the embedding model and dimension it was embedded with (cmetadata `embedding_model`,
`embedding_dim`); a load into a collection holding vectors of another model or dimension is refused before
anything is embedded (errors.EmbeddingError naming both), never mixed: a question embedded by one model finds
nothing meaningful among vectors of another.
"""
from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from chalicelib import errors
from chalicelib.config import get_settings
from chalicelib.pipeline import vector_layout
from chalicelib.pipeline.db import connect
from chalicelib.pipeline.models import QAPair
from chalicelib.pipeline.vector_copy import as_matrix, write_embeddings
from chalicelib.pipeline.vector_layout import (  # noqa: F401  (re-exported: callers import them from here)
    COLLECTION_TABLE,
    EMBEDDING_TABLE,
    HNSW_INDEX,
    POSTGRES,
    VectorLayout,
    collection_counts,
    ensure_hnsw_index,
    ensure_vector_tables,
)

logger = logging.getLogger(__name__)

# Fixed forever: changing it would give every stored row a new id and duplicate the whole store.
ID_NAMESPACE = uuid.UUID("6f1c3a52-2d7e-5b8e-9a41-0c4d8e2f7b13")
SUFFIXES = {"ddl": "-ddl", "documentation": "-doc", "sql": "-sql"}
LOADED_BY = "data_pipeline"

# Rows written per transaction: one binary COPY per batch (embedding requests have their own batch size).

_HEADING = re.compile(r"^ {0,3}#{1,6}(\s|$)")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


def split_markdown_sections(md: str) -> list[str]:
    """Split Markdown at ATX headings (not inside fenced code), each heading kept with its body.

    Text before the first heading is its own section; whitespace-only parts are dropped, and so are parts that
    are a heading alone (e.g. "## Themes (5)" over its `###` subsections): a row a retriever can return must say
    something by itself.
    """
    sections: list[list[str]] = [[]]
    in_fence = False
    for line in (md or "").splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and _HEADING.match(line):
            sections.append([])
        sections[-1].append(line)
    texts = ("\n".join(lines).strip() for lines in sections)
    return [text for text in texts if text and not _heading_only(text)]


def _heading_only(text: str) -> bool:
    return all(_HEADING.match(line) or not line.strip() for line in text.splitlines())


def training_id(collection: str, content: str) -> str:
    """Deterministic row id: uuid5 of collection + content, plus Vanna's type suffix."""
    return str(uuid.uuid5(ID_NAMESPACE, collection + content)) + SUFFIXES[collection]


@dataclass(frozen=True)
class Provenance:
    """Who produced what a load writes; recorded in each new row's cmetadata next to Vanna's `id`.

    `ddl_files` / `documentation_files` are aligned with the `ddl` / `documentation` lists given to the load;
    `writers` maps a collection to {"provider": …, "model": …} of what generated it.
    """

    task_id: str | None = None
    db_name: str | None = None
    ddl_files: Sequence[str] = ()
    documentation_files: Sequence[str] = ()
    pair_file: str | None = None
    writers: Mapping[str, Mapping[str, str | None]] = field(default_factory=dict)

    def source_file(self, collection: str, index: int) -> str | None:
        files = {"ddl": self.ddl_files, "documentation": self.documentation_files}.get(collection)
        if files is None:
            return self.pair_file
        return files[index] if index < len(files) else None

    def metadata(self, collection: str, source_file: str | None, embedding_model: str,
                 embedding_dim: int | None = None) -> dict[str, Any]:
        writer = self.writers.get(collection) or {}
        return {
            "task_id": self.task_id,
            "db_name": self.db_name,
            "source_file": source_file,
            "provider": writer.get("provider") or "unknown",
            "model": writer.get("model"),
            "embedding_model": embedding_model,
            "embedding_dim": embedding_dim,
            "loaded_by": LOADED_BY,
        }


def describe_writer(provider_name: str | None) -> dict[str, str | None]:
    """{"provider", "model"} from an LLM provider's name ("heuristic (…)", "openai-compatible:<model>")."""
    name = (provider_name or "").strip()
    if not name:
        return {"provider": "unknown", "model": None}
    if name.startswith("heuristic"):
        return {"provider": "heuristic", "model": None}
    provider, _, model = name.partition(":")
    return {"provider": provider, "model": model or None}


@dataclass
class _Item:
    collection: str
    row_id: str
    document: str
    meta: Mapping[str, Any]  # shared by every item of one source (its JSON is encoded once)


def _items(ddl: list[str], documentation: list[str], pairs: list[QAPair], provenance: Provenance | None,
           embedding_model: str, embedding_dim: int) -> list[_Item]:
    """Every non-blank input, duplicates removed, order kept. Documents exactly as Vanna writes them:
    DDL and documentation as given, a pair as json.dumps({"question", "sql"}, ensure_ascii=False)."""
    raw: list[tuple[str, int, str]] = [("ddl", i, d) for i, d in enumerate(ddl)]
    raw += [("documentation", i, d) for i, d in enumerate(documentation)]
    raw += [("sql", i, json.dumps({"question": p.question, "sql": p.sql}, ensure_ascii=False))
            for i, p in enumerate(pairs)]
    metas: dict[tuple[str, str | None], dict[str, Any]] = {}
    bare = {"embedding_model": embedding_model, "embedding_dim": embedding_dim}  # without provenance
    seen: set[str] = set()
    items: list[_Item] = []
    for collection, index, document in raw:
        if not document or not document.strip():
            continue
        row_id = training_id(collection, document)
        if row_id in seen:
            continue
        seen.add(row_id)
        meta: Mapping[str, Any] = bare
        if provenance is not None:
            source = provenance.source_file(collection, index)
            meta = metas.get((collection, source))
            if meta is None:
                meta = metas[(collection, source)] = provenance.metadata(collection, source, embedding_model,
                                                                         embedding_dim)
        items.append(_Item(collection, row_id, document, meta))
    return items


def _collection_ids(conn: Any, names: list[str]) -> dict[str, str]:
    """uuid of each collection, created (deterministically) when absent."""
    return vector_layout.collection_ids(conn, names, ID_NAMESPACE)


def check_same_model(conn: Any, collections: Mapping[str, str], wanted: set[str], model_name: str,
                     dimension: int) -> None:
    """Refuse (errors.EmbeddingError naming both) a load into a collection whose rows hold vectors of another
    embedding model or dimension. Rows that record no model (written by Vanna or LangChain) are checked by their
    dimension only."""
    uuids = {collections[name]: name for name in wanted}
    for cid, found in vector_layout.stored_models(conn, list(uuids)).items():
        for stored_model, stored_dim, rows in found:
            other_model = stored_model is not None and stored_model != model_name
            if other_model or stored_dim != dimension:
                held = f"{stored_model or 'an unrecorded model'} ({stored_dim}-d)"
                raise errors.EmbeddingError(
                    f"collection {uuids[cid]!r} holds {rows} vector(s) of {held}; refusing to load vectors of "
                    f"{model_name or 'the configured model'} ({dimension}-d) into it (the two cannot be searched "
                    "together). Configure the stored model (EMBEDDING_MODEL) or back up and truncate the vector "
                    "tables and load again"
                )


def _already_stored(conn: Any, layout: VectorLayout, items: list[_Item], collections: dict[str, str]
                    ) -> tuple[set[str], set[str]]:
    """(training ids stored under their own key, training ids whose document the collection holds already)."""
    by_key = {layout.key_value(item.row_id): item.row_id for item in items}
    same_id = {by_key[k] for k in vector_layout.existing_keys(conn, layout, list(by_key))}
    rest = [item for item in items if item.row_id not in same_id]
    positions = vector_layout.stored_documents(conn, [(collections[i.collection], i.document) for i in rest])
    return same_id, {rest[p].row_id for p in positions}


def load_training_data(
    pg_url: str,
    embedder: Any,
    *,
    ddl: list[str],
    documentation: list[str],
    pairs: list[QAPair],
    batch_size: int = 64,
    write_batch_size: int | None = None,
    provenance: Provenance | None = None,
    log: Any = logger,
    before_write: Callable[[], None] | None = None,
    create_index: bool = True,
) -> dict[str, Any]:
    """Embed (in requests of `batch_size` texts) and store everything not yet stored.

    `before_write()` runs before the first write (creating the tables) and before each batch of rows is written;
    whatever it raises stops the load there (the step's cancel check: a cancelled task gets no more rows).

    Only items neither stored under their id nor present as the same document in their collection are
    embedded. Vectors are written with binary COPY, one transaction per `write_batch_size` rows (default
    DATA_PIPELINE_VECTOR_WRITE_BATCH_SIZE; see `write_embeddings`). With `provenance`, each new row's cmetadata
    holds task_id, db_name, source_file, provider, model, embedding_model, embedding_dim and loaded_by besides
    Vanna's `id` (without it: embedding_model and embedding_dim). A collection holding vectors of another model or
    dimension is refused first (`check_same_model`).
    The HNSW cosine index is created once, when absent, after the rows are in (building it over a full
    table is much cheaper than growing it row by row); later loads never rebuild it. A caller loading in rounds
    passes `create_index=False` for all but its last round, so that the index is built once over all of them.

    Returns {"ddl": n_new, "documentation": n_new, "sql": n_new, "skipped_existing": n (all skipped items),
    "skipped_same_document": n (of those, stored by someone else under another id), "layout",
    "total_rows": {collection: rows}, "embedding_model", "dimension", "index_created"}.
    """
    batch_size = max(1, int(batch_size))
    if write_batch_size is None:
        write_batch_size = get_settings().vector_write_batch_size
    write_batch_size = max(1, int(write_batch_size))
    model_name = getattr(embedder, "model_name", "")
    dimension = int(embedder.dimension)
    check = before_write or (lambda: None)
    items = _items(ddl, documentation, pairs, provenance, model_name, dimension)
    conn = connect(pg_url, application_name="data_pipeline_training")
    try:
        check()
        fixed_dimension = ensure_vector_tables(conn, dimension, model_name)
        with conn, conn.cursor() as cur:
            layout = vector_layout.detect_layout(cur)
        assert layout is not None  # ensure_vector_tables created it
        collections = _collection_ids(conn, list(SUFFIXES))
        check_same_model(conn, collections, {item.collection for item in items}, model_name, dimension)
        same_id, same_document = _already_stored(conn, layout, items, collections)
        todo = [item for item in items if item.row_id not in same_id and item.row_id not in same_document]
        log.info("training load ({layout} layout): {items} item(s), {same_id} already stored, {same_document} already "
                 "in their collection under another id (same document), {to_embed} to embed",
                 extra={"layout": layout.name, "items": len(items), "same_id": len(same_id),
                        "same_document": len(same_document), "to_embed": len(todo)})
        inserted = dict.fromkeys(SUFFIXES, 0)
        collection_of = {item.row_id: item.collection for item in todo}
        pending: list[tuple[str, str, str]] = []
        pending_meta: list[Mapping[str, Any] | None] = []
        pending_vectors: list[Any] = []
        written = 0

        def flush() -> None:
            nonlocal written
            if not pending:
                return
            check()
            new_ids = write_embeddings(conn, pending, np.concatenate(pending_vectors), dimension=dimension,
                                       batch_size=write_batch_size, metadata=pending_meta)
            for row_id in new_ids:
                inserted[collection_of[row_id]] += 1
            written += len(pending)
            pending.clear()
            pending_meta.clear()
            pending_vectors.clear()
            log.info("training load: stored {written}/{to_embed}", extra={"written": written, "to_embed": len(todo)})

        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            vectors = embedder.embed([item.document for item in batch])
            pending_vectors.append(as_matrix(vectors, len(batch), dimension))
            pending.extend((item.row_id, collections[item.collection], item.document) for item in batch)
            pending_meta.extend(item.meta for item in batch)
            if len(pending) >= write_batch_size:
                flush()
        flush()
        index_created = ensure_hnsw_index(conn) if fixed_dimension and create_index else False
        totals = collection_counts(conn)
    finally:
        conn.close()
    skipped = len(items) - sum(inserted.values())
    result = {
        **inserted,
        "skipped_existing": skipped,
        "skipped_same_document": len(same_document),
        "layout": layout.name,
        "total_rows": totals,
        "embedding_model": model_name,
        "dimension": dimension,
        "index_created": index_created,
    }
    log.info("training load finished: ddl {ddl}, documentation {documentation}, sql {sql} new; {skipped} already "
             "present", extra={**{k: inserted[k] for k in ("ddl", "documentation", "sql")}, "skipped": skipped})
    return result
