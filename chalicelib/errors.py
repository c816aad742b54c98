"""Domain exceptions. Each carries the API error code and HTTP status it maps to.

The API layer maps them to the envelope in one place; step Lambdas let them propagate so the
state machine's Retry/Catch can tell them apart by class name.
"""
from __future__ import annotations


class DataPipelineError(Exception):
    """Base class. `code` is the API error code, `status` the HTTP status."""

    code = "INTERNAL_ERROR"
    status = 500

    def __init_subclass__(cls, *, code: str | None = None, status: int | None = None, **kwargs: object):
        """`class X(ValidationError, code="X_CODE", status=400)`: a subclass names its code (and status)."""
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.code = code
        if status is not None:
            cls.status = status

    def __init__(self, message: str, *, invalid_params: list[str] | None = None, details: str | None = None):
        super().__init__(message)
        self.message = message
        self.invalid_params = invalid_params or []
        self.details = details


class ValidationError(DataPipelineError, code="VALIDATION_ERROR", status=400):
    """A parameter or the body is invalid; `invalid_params` names it."""


class InvalidExecutionMode(ValidationError, code="INVALID_EXECUTION_MODE"):
    """execution_mode is neither complete nor step."""


class MissingStepName(ValidationError, code="MISSING_STEP_NAME"):
    """execution_mode is step but step_name is missing."""


class InvalidStepName(ValidationError, code="INVALID_STEP_NAME"):
    """step_name is not one of the four steps."""


class InvalidTableName(ValidationError, code="INVALID_TABLE_NAME"):
    """A table name is not a valid or unambiguous (schema.)identifier."""


class TableListMissing(ValidationError, code="TABLE_LIST_MISSING"):
    """The task has no table list yet."""


class Unauthorized(DataPipelineError, code="UNAUTHORIZED", status=401):
    """DATA_PIPELINE_API_KEY is set and the request has no valid Bearer key."""


class NotFound(DataPipelineError, code="NOT_FOUND", status=404):
    """The named object (a table, a route) does not exist."""


class TaskNotFound(NotFound, code="TASK_NOT_FOUND"):
    """No task with this id."""


class FileNotFound(NotFound, code="FILE_NOT_FOUND"):
    """No file with this name in the task."""


class TaskAlreadyRunning(DataPipelineError, code="TASK_ALREADY_RUNNING", status=409):
    """The task runs; it cannot start again or change its table list now."""


class TaskNotRunning(DataPipelineError, code="TASK_NOT_RUNNING", status=409):
    """Cancel was asked for a task that does not run."""


class PayloadTooLarge(DataPipelineError, code="PAYLOAD_TOO_LARGE", status=413):
    """The request body or the uploaded file is larger than the limit."""


class UnsupportedMediaType(DataPipelineError, code="UNSUPPORTED_MEDIA_TYPE", status=415):
    """The upload is not a .txt file."""


class DatabaseConnectionError(DataPipelineError, code="DATABASE_CONNECTION_ERROR", status=500):
    """The database could not be reached or refused the login. Messages never contain a password."""


class InvalidConnectionString(DatabaseConnectionError, status=400):
    """The connection string itself is malformed or missing (nothing was tried)."""


class VectorBackupFailed(DataPipelineError, code="VECTOR_BACKUP_FAILED"):
    """The vector tables could not be backed up (nothing was truncated)."""


class VectorTruncateFailed(DataPipelineError, code="VECTOR_TRUNCATE_FAILED"):
    """langchain_pg_embedding could not be emptied."""


class LLMError(DataPipelineError, code="LLM_ERROR"):
    """The LLM endpoint failed for good (after retries) or answered something unusable."""


class LLMRateLimited(LLMError, code="LLM_RATE_LIMITED"):
    """The LLM endpoint kept answering 429."""


class LLMTimeout(LLMError, code="LLM_TIMEOUT"):
    """The LLM endpoint kept timing out or failing transiently (HTTP 408/5xx, connection reset or refused): a
    later retry may succeed, so the state machine retries it (the message names the actual cause)."""


class LLMBadAnswer(LLMError, code="LLM_BAD_ANSWER"):
    """The LLM answered something unusable, twice."""


class EmbeddingError(DataPipelineError, code="EMBEDDING_ERROR"):
    """The embedding endpoint or model failed."""


class StepFailed(DataPipelineError, code="STEP_FAILED"):
    """A step could not produce its output (e.g. every table failed)."""


class BackupNotFound(NotFound, code="BACKUP_NOT_FOUND"):
    """No vector backup set with that task / timestamp / table."""


class VectorRestoreFailed(StepFailed, code="VECTOR_RESTORE_FAILED"):
    """The vector restore failed; nothing was restored."""


class VectorRestoreConflict(VectorRestoreFailed, code="VECTOR_RESTORE_CONFLICT", status=409):
    """Restoring would clash with rows already in the vector tables (nothing was changed)."""
