"""HTTP routes for the vector tables (mounted under /api/v0): list backups, restore a backup."""
from __future__ import annotations

from chalice import Blueprint

from chalicelib.api import models as rq
from chalicelib.api import models_responses as rs
from chalicelib.api import vector_service
from chalicelib.api.operations import Operation, api_route

vector_bp = Blueprint(__name__)
VECTOR = "/data_pipeline/vector"

LIST_BACKUPS = Operation("listVectorBackups", "List vector-table backups", "vectors", "Vector backups",
                         rs.BackupList, query=rq.BackupsParams, errors={404: ("TASK_NOT_FOUND",)})
RESTORE = Operation(
    "restoreVectorBackup", "Restore a vector-table backup", "vectors", "Vector tables restored", rs.RestoreResult,
    body=rq.RestoreRequest, description="Loads a task's backup CSVs back into the pgvector database in one "
    "transaction (the latest set unless `timestamp`).",
    errors={403: ("DATABASE_HOST_NOT_ALLOWED",), 404: ("TASK_NOT_FOUND", "BACKUP_NOT_FOUND"),
            409: ("VECTOR_RESTORE_CONFLICT",),
            500: ("VECTOR_RESTORE_FAILED", "DATABASE_CONNECTION_ERROR")})


@api_route(vector_bp, VECTOR + "/backups", "GET", LIST_BACKUPS)
def list_vector_backups(params: rq.BackupsParams):
    return vector_service.list_backups(params)


@api_route(vector_bp, VECTOR + "/restore", "POST", RESTORE)
def restore_vector_backup(body: rq.RestoreRequest):
    return vector_service.restore_backup(body)
