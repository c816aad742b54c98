"""Python client and command line of the data_pipeline API: `from data_pipeline_client import Client`."""
from data_pipeline_client.client import (
    FINAL_STATUSES,
    ApiError,
    Client,
    DataPipelineAPI,
    ServerUnreachable,
    TaskFailed,
)

__all__ = ["FINAL_STATUSES", "ApiError", "Client", "DataPipelineAPI", "ServerUnreachable", "TaskFailed"]
