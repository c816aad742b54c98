"""Domain exceptions. Each carries the API error code and HTTP status it maps to.

The API layer maps them to the envelope in one place; step Lambdas let them propagate so the
state machine's Retry/Catch can tell them apart by class name.
"""
from __future__ import annotations


class DataPipelineError(Exception):
    """Base class. `code` is the API error code, `status` the HTTP status."""

    code = "INTERNAL_ERROR"
    status = 500

    def __init__(self, message: str, *, invalid_params: list[str] | None = None, details: str | None = None):
        super().__init__(message)
        self.message = message
        self.invalid_params = invalid_params or []
        self.details = details


class ValidationError(DataPipelineError):
    code = "VALIDATION_ERROR"
    status = 400


class InvalidExecutionMode(ValidationError):
    code = "INVALID_EXECUTION_MODE"


class MissingStepName(ValidationError):
    code = "MISSING_STEP_NAME"


class InvalidStepName(ValidationError):
    code = "INVALID_STEP_NAME"


class InvalidTableName(ValidationError):
    code = "INVALID_TABLE_NAME"


class TableListMissing(ValidationError):
    code = "TABLE_LIST_MISSING"


class Unauthorized(DataPipelineError):
    code = "UNAUTHORIZED"
    status = 401


class NotFound(DataPipelineError):
    code = "NOT_FOUND"
    status = 404


class TaskNotFound(NotFound):
    code = "TASK_NOT_FOUND"


class FileNotFound(NotFound):
    code = "FILE_NOT_FOUND"


class TaskAlreadyRunning(DataPipelineError):
    code = "TASK_ALREADY_RUNNING"
    status = 409


class TaskNotRunning(DataPipelineError):
    code = "TASK_NOT_RUNNING"
    status = 409


class PayloadTooLarge(DataPipelineError):
    code = "PAYLOAD_TOO_LARGE"
    status = 413


class UnsupportedMediaType(DataPipelineError):
    code = "UNSUPPORTED_MEDIA_TYPE"
    status = 415


class DatabaseConnectionError(DataPipelineError):
    """The database could not be reached or refused the login. Messages never contain a password."""

    code = "DATABASE_CONNECTION_ERROR"
    status = 500


class InvalidConnectionString(DatabaseConnectionError):
    status = 400


class VectorBackupFailed(DataPipelineError):
    code = "VECTOR_BACKUP_FAILED"


class VectorTruncateFailed(DataPipelineError):
    code = "VECTOR_TRUNCATE_FAILED"


class LLMError(DataPipelineError):
    """The LLM endpoint failed for good (after retries) or answered something unusable."""

    code = "LLM_ERROR"


class LLMRateLimited(LLMError):
    code = "LLM_RATE_LIMITED"


class LLMTimeout(LLMError):
    code = "LLM_TIMEOUT"


class LLMBadAnswer(LLMError):
    code = "LLM_BAD_ANSWER"


class EmbeddingError(DataPipelineError):
    code = "EMBEDDING_ERROR"


class StepFailed(DataPipelineError):
    """A step could not produce its output (e.g. every table failed)."""

    code = "STEP_FAILED"


class BackupNotFound(NotFound):
    """No vector backup set with that task / timestamp / table."""

    code = "BACKUP_NOT_FOUND"


class VectorRestoreFailed(StepFailed):
    code = "VECTOR_RESTORE_FAILED"


class VectorRestoreConflict(VectorRestoreFailed):
    """Restoring would clash with rows already in the vector tables (nothing was changed)."""

    code = "VECTOR_RESTORE_CONFLICT"
    status = 409
