"""Every patch of moto the local stack applies, in one place and order (the patches themselves: moto_patches.py,
moto_speed_patches.py, moto_map_patches.py, moto_quota_patches.py, events.py)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from infra.local.events import watch_moto_executions
from infra.local.moto_map_patches import read_moto_item_reader_json_objects, write_moto_distributed_map_results
from infra.local.moto_patches import (
    dispatch_moto_lambda_invocations,
    fast_moto_dynamodb_results,
    make_moto_dynamodb_writes_atomic,
    memoize_moto_host_lookup,
    reuse_moto_lambda_clients,
)
from infra.local.moto_quota_patches import enforce_dynamodb_item_size, enforce_step_functions_quotas
from infra.local.moto_speed_patches import (
    cache_moto_asl_parse_trees,
    direct_moto_dynamodb_answers,
    linear_moto_dynamo_values,
    memoize_moto_json_paths,
    memoize_moto_timestamp_texts,
    memoize_moto_update_expressions,
    project_moto_items_by_attribute,
    read_moto_condition_paths_in_place,
    skip_moto_update_item_copies,
)


def apply_local_patches(undo: list[Callable[[], None]], invoke: Callable[[str, Any, dict[str, str]], bytes], *,
                        enforce_quotas: bool, on_execution_end: Callable[[dict[str, Any]], None] | None) -> None:
    """Patch moto for the local stack, appending each patch's undo to `undo` as soon as it is on (so a failed
    start, whose stop() runs them, leaves none behind): Lambda invocations go to `invoke`; DynamoDB writes are
    atomic per item; twelve patches take CPU out of moto's request path; the Distributed Map reads and writes S3 as
    on AWS; with `enforce_quotas` the AWS quotas hold; `on_execution_end` hears every execution that ends."""
    undo.append(dispatch_moto_lambda_invocations(invoke))
    for patch in (make_moto_dynamodb_writes_atomic, memoize_moto_host_lookup, fast_moto_dynamodb_results,
                  reuse_moto_lambda_clients, write_moto_distributed_map_results, read_moto_item_reader_json_objects,
                  cache_moto_asl_parse_trees, memoize_moto_json_paths, skip_moto_update_item_copies,
                  project_moto_items_by_attribute, linear_moto_dynamo_values, direct_moto_dynamodb_answers,
                  read_moto_condition_paths_in_place, memoize_moto_update_expressions,
                  memoize_moto_timestamp_texts):
        undo.append(patch())
    if enforce_quotas:
        undo.append(enforce_step_functions_quotas())
        undo.append(enforce_dynamodb_item_size())
    if on_execution_end is not None:
        undo.append(watch_moto_executions(on_execution_end))
