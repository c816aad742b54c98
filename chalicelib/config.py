"""Settings read from the environment, lazily, every time they are asked for.

Nothing here is read at import time: Chalice's test client and moto set variables per call.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chalicelib import secrets

STEP_NAMES = ("ddl_generation", "qa_generation", "sql_validation", "training_load")


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def _env_number(name: str, default: Any, cast: Callable[[str], Any], what: str) -> Any:
    raw = _env(name)
    if raw is None:
        return default
    try:
        return cast(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {name} must be {what}, got {raw!r}") from exc


def _env_int(name: str, default: int) -> int:
    return _env_number(name, default, int, "an integer")


def _env_float(name: str, default: float) -> float:
    return _env_number(name, default, float, "a number")


def _env_optional_int(name: str) -> int | None:
    """A positive integer, or None when unset (or 0)."""
    if _env(name) is None:
        return None
    return max(0, _env_int(name, 0)) or None


LLM_CALL_KINDS = ("comments", "themes", "pairs", "repair")
# Repairs want the one right answer, pairs variety: temperature per call kind (LLM_TEMPERATURE_<KIND>).
DEFAULT_TEMPERATURES = {"comments": 0.2, "themes": 0.3, "pairs": 0.7, "repair": 0.0}
RESPONSE_FORMATS = ("auto", "json_schema", "json_object", "text")


def _env_flag(name: str, *, default: bool) -> bool:
    raw = _env(name)
    if raw is None:
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"environment variable {name} must be 1/0 (true/false), got {raw!r}")


@dataclass(frozen=True)
class Settings:
    """One snapshot of the configuration.

    Fan-out and LLM concurrency (defaults sized for an OpenAI-compatible endpoint answering in ~0.5-10 s):
    - LLM_MAX_CONCURRENCY (16): LLM calls in flight per process (a semaphore shared by every provider in it),
      with exponential backoff on 429/5xx. A DDL Map iteration also processes at most this many of its
      tables at once. Each Lambda is its own process (locally too, with the worker processes of the local
      stack; in-process test stacks share one), so the ceiling is DDL_MAX_CONCURRENCY x min(DDL_BATCH_SIZE,
      this) = 50 with the defaults: 50 tables in one round of LLM calls, within common provider limits
      (hundreds of requests per minute, 429s absorbed by the backoff); lower it for a small self-hosted model.
    - DATA_PIPELINE_DDL_BATCH_SIZE (10): tables per ddl_generation Map iteration (one Lambda); its tables run
      concurrently, so a batch takes about as long as its slowest table and no invocation grows with the
      number of tables.
    - DATA_PIPELINE_DDL_MAX_CONCURRENCY (5): Map iterations (Lambdas) of ddl_generation at once.
    - DATA_PIPELINE_QA_MAX_CONCURRENCY (5): themes generated at once (= the default theme count).

    LLM retries and prompt size (chalicelib.providers.openai_client, chalicelib.pipeline.prompt_budget):
    - LLM_MAX_RETRIES (2): quick retries by the openai client inside a Lambda; LLM_MAX_RETRY_WAIT_SECONDS (2): the
      longest it waits between two (its backoff and a server's Retry-After are capped; a longer Retry-After is
      not waited for). Past that, LLMRateLimited / LLMTimeout propagate to the state machine's Retry.
    - LLM_CONTEXT_TOKENS (32768): the model's context window; LLM_ANSWER_TOKENS (4096): the part of it kept for
      the answer. Every prompt is built to fit in the difference (estimated conservatively, see prompt_budget).
    - LLM_CONTEXT_SHRINKS (3): an endpoint's context-length 400 rebuilds the prompt this many times at most, each
      time for a smaller budget (fewer sample values, then fewer tables), before the call fails.

    Model settings per call kind (comments, themes, pairs, repair; chalicelib.providers.openai_chat):
    - LLM_TEMPERATURE_COMMENTS / _THEMES / _PAIRS / _REPAIR (0.2 / 0.3 / 0.7 / 0.0);
    - LLM_MAX_TOKENS_COMMENTS / _THEMES / _PAIRS / _REPAIR (unset: LLM_ANSWER_TOKENS), never above it;
    - LLM_RESPONSE_FORMAT (`auto`): `auto` tries a JSON schema, then JSON mode, then plain text, once per endpoint
      and model, and remembers what the endpoint accepted; `json_schema`, `json_object` or `text` start there.

    Where `table_list_file` (create a task) may be read from:
    - DATA_PIPELINE_TABLE_LIST_BUCKETS: comma list of S3 buckets whose `s3://bucket/key.txt` may be named, besides
      the task bucket (always allowed).
    - DATA_PIPELINE_LOCAL (`1`/`0`): whether this process is the local stack. Unset: local unless the process runs
      in AWS Lambda (the Lambda runtime always sets AWS_LAMBDA_FUNCTION_NAME; `make serve`, `chalice local` and the
      test client do not). Only the local stack reads table lists from its own disk.
    - DATA_PIPELINE_TABLE_LIST_DIR: the directory (local stack only) relative `.txt` paths are read from; nothing
      outside it. Default: the process's current directory, i.e. where `make serve` was started.

    Security (README "Security"):
    - DATA_PIPELINE_DB_URL, PGVECTOR_DB_URL, LLM_API_KEY, EMBEDDING_API_KEY, DATA_PIPELINE_API_KEY: the value, or
      `secretsmanager:<name or ARN>` / `ssm:<parameter name>`, read at run time and cached for
      DATA_PIPELINE_SECRET_CACHE_SECONDS (60) per container (chalicelib/secrets.py).
    - DATA_PIPELINE_AUTH_MODE: `SecretsManagerKey` (Bearer key) or `IAM` (SigV4, checked by API Gateway); the
      template sets it. Without it and without an API key only the local stack answers.
    - DATA_PIPELINE_KMS_KEY_ID: the KMS key that seals a task's db_connection password in DynamoDB (locally a
      moto key under alias/data-pipeline-local is made on first use).
    - DATA_PIPELINE_METRICS (`1`/`0`): EMF metrics on stdout; default on in AWS Lambda, off on the local stack.
    """

    db_url: str | None
    pgvector_db_url: str | None
    llm_base_url: str | None
    llm_api_key: str | None
    llm_model: str
    llm_timeout_seconds: float
    llm_max_retries: int
    llm_max_concurrency: int
    embedding_base_url: str | None
    embedding_api_key: str | None
    embedding_model: str | None
    embedding_dim: int | None
    embedding_batch_size: int
    api_key: str | None
    log_level: str
    bucket: str
    table_name: str
    state_machine_arn: str | None
    sample_rows: int
    enum_max_distinct: int
    exact_count_threshold: int
    theme_count: int
    questions_per_theme: int
    repair_max_rounds: int
    statement_timeout_ms: int
    ddl_batch_size: int
    ddl_max_concurrency: int
    qa_max_concurrency: int
    validation_batch_size: int
    max_upload_bytes: int
    validation_concurrency: int = 4
    vector_write_batch_size: int = 1000
    validation_map_concurrency: int = 4
    table_list_buckets: tuple[str, ...] = ()
    local_stack: bool = False
    table_list_dir: str | None = None
    auth_mode: str | None = None
    kms_key_id: str | None = None
    metrics_enabled: bool = False
    allowed_db_hosts: str | None = None  # DATA_PIPELINE_ALLOWED_DB_HOSTS, see chalicelib/pipeline/hosts.py
    allow_heuristic: bool = True  # DATA_PIPELINE_ALLOW_HEURISTIC: the heuristic provider may stand in for an LLM
    llm_max_retry_wait_seconds: float = 2.0
    llm_context_tokens: int = 32768
    llm_answer_tokens: int = 4096
    # A task in_progress whose item has not changed for this long is checked against its execution when read.
    reconcile_after_seconds: int = 60
    llm_context_shrinks: int = 3
    llm_temperatures: tuple[tuple[str, float], ...] = tuple(DEFAULT_TEMPERATURES.items())
    llm_max_tokens: tuple[tuple[str, int], ...] = ()  # only the kinds configured; others use llm_answer_tokens
    llm_response_format: str = "auto"

    def llm_call_settings(self, kind: str) -> tuple[float, int]:
        """(temperature, max_tokens) of one LLM call kind (LLM_CALL_KINDS)."""
        temperature = dict(self.llm_temperatures).get(kind, DEFAULT_TEMPERATURES.get(kind, 0.2))
        max_tokens = dict(self.llm_max_tokens).get(kind) or self.llm_answer_tokens
        return temperature, max(1, min(max_tokens, self.llm_answer_tokens))

    def business_db_url_for(self, task_db_connection: str | None = None) -> str | None:
        """Where a task's business data is read: see `get_business_db_url`."""
        return get_business_db_url(task_db_connection, self)

    def vector_db_url_for(self, task_db_connection: str | None = None) -> str | None:
        """Where a task's vectors are written: see `get_vector_db_url`."""
        return get_vector_db_url(task_db_connection, self)

    @property
    def has_llm(self) -> bool:
        return bool(self.llm_base_url)

    @property
    def has_remote_embeddings(self) -> bool:
        return bool(self.embedding_base_url)


def get_business_db_url(task_db_connection: str | None = None, settings: Settings | None = None) -> str | None:
    """The business database of a task: its own `db_connection`, else DATA_PIPELINE_DB_URL.

    The local stack sets DATA_PIPELINE_DB_URL to its embedded demo database when the user set nothing, so
    locally the last resort is the demo database (infra/local/stack.py `resolve_databases`).
    """
    if task_db_connection and task_db_connection.strip():
        return _opened(task_db_connection).strip()
    return (settings or get_settings()).db_url


def get_vector_db_url(task_db_connection: str | None = None, settings: Settings | None = None) -> str | None:
    """The pgvector database of a task: PGVECTOR_DB_URL, else DATA_PIPELINE_DB_URL, else the task's own
    `db_connection` (vectors beside the business data). The one rule every step and route uses.

    The local stack sets PGVECTOR_DB_URL to its embedded `vector_store` database only when neither variable
    was set by the user.
    """
    configured = (settings or get_settings()).pgvector_db_url  # PGVECTOR_DB_URL or DATA_PIPELINE_DB_URL
    if configured:
        return configured
    if task_db_connection and task_db_connection.strip():
        return _opened(task_db_connection).strip()
    return None


def _opened(task_db_connection: str) -> str:
    """A task's db_connection, or the error that kept its sealed password closed (stores/task_items.py
    UnopenedConnection): a step never connects with the masked URL."""
    error = getattr(task_db_connection, "unopened_error", None)
    if error is not None:
        raise error
    return task_db_connection


def get_settings() -> Settings:
    dim = _env("EMBEDDING_DIM")
    local_stack = _env_flag("DATA_PIPELINE_LOCAL", default=_env("AWS_LAMBDA_FUNCTION_NAME") is None)
    return Settings(
        db_url=secrets.resolve_db_url(_env("DATA_PIPELINE_DB_URL"), variable="DATA_PIPELINE_DB_URL"),
        pgvector_db_url=(secrets.resolve_db_url(_env("PGVECTOR_DB_URL"), variable="PGVECTOR_DB_URL")
                         or secrets.resolve_db_url(_env("DATA_PIPELINE_DB_URL"), variable="DATA_PIPELINE_DB_URL")),
        llm_base_url=_env("LLM_BASE_URL"),
        llm_api_key=secrets.resolve(_env("LLM_API_KEY"), variable="LLM_API_KEY"),
        llm_model=_env("LLM_MODEL", "gpt-4o-mini"),
        llm_timeout_seconds=float(_env("LLM_TIMEOUT_SECONDS", "60")),
        llm_max_retries=_env_int("LLM_MAX_RETRIES", 2),
        llm_max_concurrency=_env_int("LLM_MAX_CONCURRENCY", 16),
        embedding_base_url=_env("EMBEDDING_BASE_URL"),
        embedding_api_key=secrets.resolve(_env("EMBEDDING_API_KEY"), variable="EMBEDDING_API_KEY"),
        embedding_model=_env("EMBEDDING_MODEL"),
        embedding_dim=int(dim) if dim else None,
        embedding_batch_size=_env_int("EMBEDDING_BATCH_SIZE", 64),
        api_key=secrets.resolve(_env("DATA_PIPELINE_API_KEY"), variable="DATA_PIPELINE_API_KEY"),
        log_level=(_env("DATA_PIPELINE_LOG_LEVEL", "INFO") or "INFO").upper(),
        bucket=_env("DATA_PIPELINE_BUCKET", "data-pipeline-local") or "data-pipeline-local",
        table_name=_env("DATA_PIPELINE_TABLE", "data-pipeline-tasks") or "data-pipeline-tasks",
        state_machine_arn=_env("DATA_PIPELINE_STATE_MACHINE_ARN"),
        sample_rows=_env_int("DATA_PIPELINE_SAMPLE_ROWS", 20),
        enum_max_distinct=_env_int("DATA_PIPELINE_ENUM_MAX_DISTINCT", 20),
        exact_count_threshold=_env_int("DATA_PIPELINE_EXACT_COUNT_THRESHOLD", 100_000),
        theme_count=_env_int("DATA_PIPELINE_THEME_COUNT", 5),
        questions_per_theme=_env_int("DATA_PIPELINE_QUESTIONS_PER_THEME", 10),
        repair_max_rounds=_env_int("DATA_PIPELINE_REPAIR_MAX_ROUNDS", 2),
        statement_timeout_ms=_env_int("DATA_PIPELINE_STATEMENT_TIMEOUT_MS", 5000),
        ddl_batch_size=_env_int("DATA_PIPELINE_DDL_BATCH_SIZE", 10),
        ddl_max_concurrency=_env_int("DATA_PIPELINE_DDL_MAX_CONCURRENCY", 5),
        qa_max_concurrency=_env_int("DATA_PIPELINE_QA_MAX_CONCURRENCY", 5),
        validation_batch_size=_env_int("DATA_PIPELINE_VALIDATION_BATCH_SIZE", 200),
        max_upload_bytes=_env_int("DATA_PIPELINE_MAX_UPLOAD_BYTES", 1024 * 1024),
        validation_concurrency=_env_int("DATA_PIPELINE_VALIDATION_CONCURRENCY", 4),
        vector_write_batch_size=_env_int("DATA_PIPELINE_VECTOR_WRITE_BATCH_SIZE", 1000),
        validation_map_concurrency=_env_int("DATA_PIPELINE_VALIDATION_MAP_CONCURRENCY", 4),
        table_list_buckets=tuple(b.strip() for b in (_env("DATA_PIPELINE_TABLE_LIST_BUCKETS") or "").split(",")
                                 if b.strip()),
        local_stack=local_stack,
        table_list_dir=_env("DATA_PIPELINE_TABLE_LIST_DIR"),
        auth_mode=get_auth_mode(),
        kms_key_id=_env("DATA_PIPELINE_KMS_KEY_ID"),
        metrics_enabled=_env_flag("DATA_PIPELINE_METRICS", default=not local_stack),
        allowed_db_hosts=_env("DATA_PIPELINE_ALLOWED_DB_HOSTS"),
        allow_heuristic=_env_flag("DATA_PIPELINE_ALLOW_HEURISTIC", default=True),
        llm_max_retry_wait_seconds=float(_env("LLM_MAX_RETRY_WAIT_SECONDS", "2") or "2"),
        llm_context_tokens=_env_int("LLM_CONTEXT_TOKENS", 32768),
        llm_answer_tokens=_env_int("LLM_ANSWER_TOKENS", 4096),
        reconcile_after_seconds=_env_int("DATA_PIPELINE_RECONCILE_AFTER_SECONDS", 60),
        llm_context_shrinks=max(0, _env_int("LLM_CONTEXT_SHRINKS", 3)),
        llm_temperatures=tuple((kind, _env_float(f"LLM_TEMPERATURE_{kind.upper()}", DEFAULT_TEMPERATURES[kind]))
                               for kind in LLM_CALL_KINDS),
        llm_max_tokens=tuple((kind, tokens) for kind in LLM_CALL_KINDS
                             if (tokens := _env_optional_int(f"LLM_MAX_TOKENS_{kind.upper()}"))),
        llm_response_format=_response_format(),
    )


def _response_format() -> str:
    value = (_env("LLM_RESPONSE_FORMAT", "auto") or "auto").lower()
    if value not in RESPONSE_FORMATS:
        raise ValueError(f"environment variable LLM_RESPONSE_FORMAT must be one of {', '.join(RESPONSE_FORMATS)}, "
                         f"got {value!r}")
    return value


AUTH_MODES = ("SecretsManagerKey", "IAM")


def get_auth_mode() -> str | None:
    """DATA_PIPELINE_AUTH_MODE, one of AUTH_MODES (the template's AuthMode parameter), or None."""
    mode = _env("DATA_PIPELINE_AUTH_MODE")
    if mode is not None and mode not in AUTH_MODES:
        raise ValueError(f"environment variable DATA_PIPELINE_AUTH_MODE must be one of {', '.join(AUTH_MODES)}, "
                         f"got {mode!r}")
    return mode
