"""A LangChain/Vanna vector store made by others, as the load tests find it."""
from __future__ import annotations

import psycopg2

SQL_COLLECTION_UUID = "00000000-0000-0000-0000-000000000001"


def create_langchain_store(url: str, embedding_type: str, *extra_statements: str) -> None:
    """The two tables as LangChain/Vanna create them (`embedding_type`: `vector(8)`, or `vector` without a fixed
    dimension), a `sql` collection with SQL_COLLECTION_UUID, then `extra_statements`."""
    conn = psycopg2.connect(url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("create table langchain_pg_collection (uuid uuid primary key, name varchar not null unique, "
                    "cmetadata json)")
        cur.execute("create table langchain_pg_embedding (id varchar primary key, collection_id uuid references "
                    f"langchain_pg_collection(uuid) on delete cascade, embedding {embedding_type}, document varchar, "
                    "cmetadata jsonb)")
        cur.execute("insert into langchain_pg_collection values (%s, 'sql', null)", (SQL_COLLECTION_UUID,))
        for statement in extra_statements:
            cur.execute(statement)
    conn.close()
