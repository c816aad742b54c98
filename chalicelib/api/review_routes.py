"""HTTP routes of the review (mounted under /api/v0): validate one SQL, read and save versions of the pair file,
edit a table's comments; and the vector counts. Registered like vector_routes."""
from __future__ import annotations

import json

from chalice import Blueprint

from chalicelib.api import review_models as rv
from chalicelib.api import review_service
from chalicelib.api.envelope import error_response, json_response
from chalicelib.api.operations import Operation, api_route

review_bp = Blueprint(__name__)
TASK = "/data_pipeline/tasks/{task_id}"
NO_TASK = ("TASK_NOT_FOUND",)
DB_ERRORS = {403: ("DATABASE_HOST_NOT_ALLOWED",), 500: ("DATABASE_CONNECTION_ERROR",)}
# The task's own database not answering is a 400 naming its db_connection, as a host that does not resolve is
# when the task is created (the service is fine; the connection the task was given is not).
TASK_DB_ERRORS = {400: ("DATABASE_CONNECTION_ERROR",), 403: ("DATABASE_HOST_NOT_ALLOWED",)}

VALIDATE_SQL = Operation(
    "validateSql", "Validate one SQL on the task's database (never executed)", "review", "SQL checked",
    rv.SqlValidation, body=rv.ValidateSqlRequest, errors={**TASK_DB_ERRORS, 404: NO_TASK},
    description="The path sql_validation uses: PostgreSQL's parser proves one read-only query (the deny-list "
    "applies), then EXPLAIN in a read-only transaction. An invalid SQL is a 200 with `valid` false and "
    "PostgreSQL's error.")
GET_PAIRS = Operation(
    "getPairs", "A version of the task's Question-SQL pair file", "review", "Pair file", rv.PairFile,
    query=rv.PairsParams, errors={404: (*NO_TASK, "FILE_NOT_FOUND"), 409: ("PAIR_FILE_MISSING",)},
    description="Version 1 is the file the run wrote; `versions` lists every saved version, oldest first.")
SAVE_PAIRS = Operation(
    "savePairs", "Save a new version of the pair file", "review", "Pair file saved", rv.PairsSaved,
    body=rv.SavePairsRequest,
    errors={**TASK_DB_ERRORS, 404: (*NO_TASK, "FILE_NOT_FOUND"), 409: ("PAIRS_VERSION_CONFLICT", "PAIR_FILE_MISSING"),
            422: ("SQL_VALIDATION_FAILED",)},
    description="`pairs` is the full new list. Every added or edited SQL passes the read-only EXPLAIN first; a "
    "422 carries `data.errors` [{index, sql, error}] with PostgreSQL's message and nothing is written. A save "
    "writes a new version file (the previous ones kept) and its change log, and makes it the pair file "
    "training_load loads.")
TABLE_COMMENTS = Operation(
    "editTableComments", "Edit a documented table's comments", "review", "Table comments saved",
    rv.TableCommentsSaved, body=rv.TableCommentsRequest,
    errors={**TASK_DB_ERRORS, 400: ("INVALID_TABLE_NAME", "DATABASE_CONNECTION_ERROR"), 404: NO_TASK,
            409: ("TABLE_NOT_DOCUMENTED", "COLUMN_NOT_DOCUMENTED"), 422: ("DDL_CHECK_FAILED",)},
    description="Rewrites the table's .ddl and _detail.md files; the new DDL is first executed in a scratch "
    "schema in a transaction that is rolled back.")
VECTOR_STATS = Operation(
    "vectorStats", "Rows per vector collection", "vectors", "Vector counts", rv.VectorStats,
    query=rv.VectorStatsParams, errors={**DB_ERRORS, 404: NO_TASK})


@api_route(review_bp, TASK + "/sql/validate", "POST", VALIDATE_SQL)
def validate_sql(task_id, body: rv.ValidateSqlRequest):
    return review_service.validate_sql(task_id, body)


@api_route(review_bp, TASK + "/pairs", "GET", GET_PAIRS)
def get_pairs(task_id, params: rv.PairsParams):
    return review_service.get_pairs(task_id, params.version)


@api_route(review_bp, TASK + "/pairs", "PUT", SAVE_PAIRS)
def save_pairs(task_id, body: rv.SavePairsRequest):
    try:
        return review_service.save_pairs(task_id, body)
    except review_service.SqlErrors as exc:
        response = error_response(exc)  # the envelope of the error, plus the failing statements in `data`
        envelope = json.loads(response.body)
        envelope["data"] = exc.data
        return json_response(envelope, exc.status)


@api_route(review_bp, TASK + "/tables/comments", "POST", TABLE_COMMENTS)
def edit_table_comments(task_id, body: rv.TableCommentsRequest):
    return review_service.edit_table_comments(task_id, body)


@api_route(review_bp, "/data_pipeline/vector/stats", "GET", VECTOR_STATS)
def vector_stats(params: rv.VectorStatsParams):
    return review_service.vector_stats(params.task_id)
