"""HTTP routes for the vector tables (mounted under /api/v0): list backups, restore a backup."""
from __future__ import annotations

from chalice import Blueprint

vector_bp = Blueprint(__name__)
