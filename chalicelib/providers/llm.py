"""Kept only for chalicelib/api/database_service.py, which imports `get_llm_provider` from here: the factory is
chalicelib.providers.factory (import it from there; this module goes once nothing imports it)."""
from __future__ import annotations

from chalicelib.providers.factory import get_llm_provider

__all__ = ["get_llm_provider"]
