"""What a Distributed Map reads and writes in S3: the item manifest a plan step writes for the Map's ItemReader
(`arn:aws:states:::s3:getObject`, InputType JSON) and the child results the Map's ResultWriter leaves
(`{prefix}/{map run id}/manifest.json` listing `SUCCEEDED_n.json` / `FAILED_n.json`, each a JSON array of
`{Name, Status, Output, …}` with `Output` a JSON string).

The state machine carries only the references (`{"Bucket", "Key"}` of the manifest, the results prefix, counts),
never the items or the results: a state's input/output stays a few hundred bytes at any table count.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from chalicelib.errors import StepFailed
from chalicelib.steps.runtime import StepRun
from chalicelib.stores.files import task_prefix

MAPS = "work/maps/"


def items_name(map_name: str) -> str:
    return f"{MAPS}{map_name}/items.json"


def results_name(map_name: str) -> str:
    return f"{MAPS}{map_name}/results"


def write_items(run: StepRun, map_name: str, items: list[Any]) -> dict[str, Any]:
    """Write the Map's items as one JSON array; returns what the state machine passes on: the ItemReader's
    `{Bucket, Key}`, the ResultWriter's `{Bucket, Prefix}` (the results of earlier runs are removed first) and
    the item count."""
    run.files.delete_many(run.files.iter_names(f"{MAPS}{map_name}/"))
    store = run.files.store
    run.files.put_text(items_name(map_name), json.dumps(items, ensure_ascii=False, separators=(",", ":")))
    return {
        "items": {"Bucket": store.bucket, "Key": store.key(run.task_id, items_name(map_name))},
        "results": {"Bucket": store.bucket, "Prefix": store.key(run.task_id, results_name(map_name))},
        "count": len(items),
    }


def iter_outputs(run: StepRun, results: Any) -> Iterator[dict[str, Any]]:
    """Each child's output, one results file in memory at a time. `results` is the ResultWriter's details
    (`{"Bucket", "Key"}` of its manifest, or the Map's whole output `{"MapRunArn", "ResultWriterDetails"}`),
    or, from callers of the merge steps without a Map run, the list of outputs itself."""
    if results is None:
        return
    if isinstance(results, list):
        yield from results
        return
    details = results.get("ResultWriterDetails", results)
    bucket, key = details.get("Bucket"), details.get("Key")
    prefix = task_prefix(run.task_id)
    if bucket != run.files.store.bucket or not str(key).startswith(prefix):
        raise StepFailed(f"the map results s3://{bucket}/{key} are not this task's files")
    manifest = json.loads(run.files.get_text(key[len(prefix):]))
    files = manifest.get("ResultFiles") or {}
    for status in ("SUCCEEDED", "FAILED", "PENDING"):
        for entry in files.get(status) or []:
            entry_key = str(entry["Key"])
            if not entry_key.startswith(prefix):
                raise StepFailed(f"a map result file s3://{bucket}/{entry_key} is not this task's file")
            yield from _outputs_of(json.loads(run.files.get_text(entry_key[len(prefix):])), status)


def _outputs_of(children: Iterable[dict[str, Any]], status: str) -> Iterator[dict[str, Any]]:
    for child in children:
        output = child.get("Output")
        if status == "SUCCEEDED" and isinstance(output, str):
            yield json.loads(output)
            continue
        # A child execution that failed although every item catches its errors (a timeout of the child, an
        # abort): reported as a failed item with the child's error.
        item = json.loads(child["Input"]) if isinstance(child.get("Input"), str) else {}
        yield {**item, "failed": True,
               "error": {"Error": child.get("Error") or f"States.{status.title()}", "Cause": child.get("Cause") or ""}}
