"""The OpenAPI 3 document of the API, served at /api/v0/openapi.json."""
from __future__ import annotations

from chalice import Blueprint

openapi_bp = Blueprint(__name__)
