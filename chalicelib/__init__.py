"""data_pipeline: turns a live PostgreSQL database into text-to-SQL training data in pgvector."""
