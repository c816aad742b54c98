"""The API's own lines in a task's log (logger DataPipelineAPI): created, list stored, execution started…"""
from __future__ import annotations

from typing import Any

from chalicelib.stores.files import FileStore
from chalicelib.tasklog import TaskLogger

API_LOGGER = "DataPipelineAPI"


def log_api_event(task_id: str, message: str, level: str = "INFO", **extra: Any) -> None:
    with TaskLogger(task_id, logger_name=API_LOGGER, files=FileStore()) as log:
        log.log(level, message, **extra)
