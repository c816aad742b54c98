"""HTTP routes for the vector tables (mounted under /api/v0): list backups, restore a backup."""
from __future__ import annotations

from chalice import Blueprint

from chalicelib.api import vector_service
from chalicelib.api.envelope import handle_errors, success
from chalicelib.api.requests import parse_json_object

vector_bp = Blueprint(__name__)
ANY = ["*/*"]  # bodies are checked by us; Chalice would answer a foreign Content-Type with a non-envelope 415


@vector_bp.route("/data_pipeline/vector/backups", methods=["GET"])
@handle_errors
def list_vector_backups():
    return success(vector_service.list_backups(vector_bp.current_request.query_params), "Vector backups")


@vector_bp.route("/data_pipeline/vector/restore", methods=["POST"], content_types=ANY)
@handle_errors
def restore_vector_backup():
    body = parse_json_object(vector_bp.current_request.raw_body)
    return success(vector_service.restore_backup(body), "Vector tables restored")
