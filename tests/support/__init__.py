"""Test helpers: real local servers (PostgreSQL, an OpenAI-compatible stub)."""
