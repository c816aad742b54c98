"""The vector-store clients users already have, set up the way their own docs do, over the product's embeddings.

- `ProductEmbeddings`: a LangChain `Embeddings` over the product's embedding provider (offline MiniLM, 384-d),
  so third-party clients and the product embed the same way.
- `sqlalchemy_url`: a psycopg2/pgserver URL (`postgresql://postgres:@/db?host=/socket/dir`) as the
  `postgresql+psycopg://` URL langchain_postgres and Vanna take.
- `vanna_client`: Vanna 0.7.x's `PG_VectorStore` with stub chat methods (no LLM key needed).
- `community_store`: langchain_community's legacy `PGVector` (`uuid` primary key, `custom_id`).
"""
from __future__ import annotations

from typing import Any

from langchain_core.embeddings import Embeddings

from chalicelib.providers.embeddings import MiniLMEmbeddings


class ProductEmbeddings(Embeddings):
    def __init__(self, provider: Any = None):
        self.provider = provider or MiniLMEmbeddings()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.provider.embed(list(texts))

    def embed_query(self, text: str) -> list[float]:
        return self.provider.embed([text])[0]


def sqlalchemy_url(url: str, driver: str = "psycopg") -> str:
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in {"postgresql", "postgres"}:
        raise ValueError(f"not a PostgreSQL URL: {url}")
    return f"postgresql+{driver}://{rest}"


def vanna_client(url: str, embeddings: Embeddings, n_results: int = 10) -> Any:
    from vanna.base import VannaBase
    from vanna.pgvector import PG_VectorStore

    class LocalVanna(PG_VectorStore, VannaBase):
        """Vanna's pgvector store; the chat half is never called in these tests."""

        def __init__(self, config: dict[str, Any]):
            PG_VectorStore.__init__(self, config=config)

        def system_message(self, message: str) -> Any:
            return {"role": "system", "content": message}

        def user_message(self, message: str) -> Any:
            return {"role": "user", "content": message}

        def assistant_message(self, message: str) -> Any:
            return {"role": "assistant", "content": message}

        def submit_prompt(self, prompt: Any, **kwargs: Any) -> str:
            raise AssertionError("no LLM in these tests")

    return LocalVanna({"connection_string": sqlalchemy_url(url), "embedding_function": embeddings,
                       "n_results": n_results})


def postgres_store(url: str, embeddings: Embeddings, collection: str) -> Any:
    """langchain_postgres.PGVector (the layout Vanna uses)."""
    from langchain_postgres import PGVector

    return PGVector(embeddings=embeddings, collection_name=collection, connection=sqlalchemy_url(url),
                    use_jsonb=True)


def community_store(url: str, embeddings: Embeddings, collection: str, dimension: int = 384) -> Any:
    """langchain_community's legacy PGVector; creates its tables (json cmetadata, its default) when absent.

    Its table classes are cached per process on first use, so every call in one process gets the same layout.
    """
    import warnings

    from langchain_community.vectorstores.pgvector import PGVector

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its own pending-deprecation notices
        return PGVector(connection_string=sqlalchemy_url(url, "psycopg2"), embedding_function=embeddings,
                        collection_name=collection, embedding_length=dimension)
