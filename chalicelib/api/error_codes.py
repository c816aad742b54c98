"""Every error code an answer can carry in `error.code`, with its HTTP status and what it means (chalicelib/errors.py
plus the middleware and the Chalice-level answers the middleware re-wraps). The OpenAPI document and the README
name them per operation from here."""
from chalicelib.config import STEP_NAMES

ERROR_CODES: dict[str, tuple[int, str]] = {
    "VALIDATION_ERROR": (400, "a parameter or the body is invalid; `error.invalid_params` names it"),
    "INVALID_EXECUTION_MODE": (400, "execution_mode is not complete or step"),
    "MISSING_STEP_NAME": (400, "execution_mode is step but step_name is missing"),
    "INVALID_STEP_NAME": (400, "step_name is not one of " + ", ".join(STEP_NAMES)),
    "INVALID_TABLE_NAME": (400, "a table name is not a valid (schema.)identifier"),
    "TABLE_LIST_MISSING": (400, "the task has no table list yet"),
    "DATABASE_CONNECTION_ERROR": (400, "400 when the connection string is malformed or missing, 500 when the "
                                       "database is unreachable or refuses the login"),
    "UNAUTHORIZED": (401, "DATA_PIPELINE_API_KEY is set and the request has no valid `Authorization: Bearer` key"),
    "NOT_FOUND": (404, "the named object (e.g. a table) does not exist"),
    "TASK_NOT_FOUND": (404, "no task with this id"),
    "FILE_NOT_FOUND": (404, "no file with this name in the task"),
    "METHOD_NOT_ALLOWED": (405, "the path exists but not with this HTTP method"),
    "TASK_ALREADY_RUNNING": (409, "the task runs; it cannot start again or change its table list now"),
    "TASK_NOT_RUNNING": (409, "cancel was asked for a task that does not run"),
    "PAYLOAD_TOO_LARGE": (413, "the request body (or the uploaded file) is larger than the limit"),
    "UNSUPPORTED_MEDIA_TYPE": (415, "the upload is not a .txt file"),
    "INTERNAL_ERROR": (500, "an unexpected error; details are in the service logs, never in the answer"),
    "VECTOR_BACKUP_FAILED": (500, "the vector tables could not be backed up"),
    "VECTOR_TRUNCATE_FAILED": (500, "langchain_pg_embedding could not be emptied (or restored)"),
    "LLM_ERROR": (500, "the LLM endpoint failed for good"),
    "LLM_RATE_LIMITED": (500, "the LLM endpoint kept answering 429"),
    "LLM_TIMEOUT": (500, "the LLM endpoint kept timing out or failing transiently (HTTP 5xx, connection errors)"),
    "LLM_BAD_ANSWER": (500, "the LLM answered something unusable twice"),
    "EMBEDDING_ERROR": (500, "the embedding endpoint failed"),
    "STEP_FAILED": (500, "a step could not produce its output"),
    "BACKUP_NOT_FOUND": (404, "the task has no vector backup with that timestamp / table"),
    "VECTOR_RESTORE_CONFLICT": (409, "restoring would clash with rows already in the vector tables; nothing changed"),
    "VECTOR_RESTORE_FAILED": (500, "the vector restore failed; nothing was restored"),
}
# Every operation can answer these (validation, the API key, an unknown method, the size limit, a bug).
ALWAYS = {400: ["VALIDATION_ERROR"], 401: ["UNAUTHORIZED"], 405: ["METHOD_NOT_ALLOWED"],
          413: ["PAYLOAD_TOO_LARGE"], 500: ["INTERNAL_ERROR"]}
STATUS_TEXT = {400: "Invalid request", 401: "Missing or wrong API key", 404: "Not found", 405: "Method not allowed",
               409: "Conflict", 413: "Request too large", 415: "Unsupported media type", 500: "Server error"}
