"""Patches of moto's Distributed Map so that it reads and writes S3 as AWS does: an ItemReader of a JSON object
without ReaderConfig, and ResultWriter's result files. Each returns a function undoing it; applying one twice does
nothing the second time."""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

RESULT_WRITER_ITEMS_PER_FILE = 1000  # child results per SUCCEEDED_n.json (AWS splits by size; readers iterate)


def write_moto_distributed_map_results() -> Callable[[], None]:
    """moto's Distributed Map `ResultWriter` (s3:putObject) writes only a manifest whose `ResultFiles` are empty
    (a TODO of the LocalStack port) and drops the children's outputs. AWS writes them: `{Prefix}/{map run
    id}/manifest.json` listing `SUCCEEDED_n.json` files, each a JSON array of `{Name, Status, Input, Output, …}`
    with `Output` a JSON string. This patch writes the same files from the outputs moto collected, so code that
    reads a map run's results (the merge steps) runs locally as on AWS. Its `Parameters` paths (`Bucket.$`,
    `Prefix.$`) are read from the Map state's input, as on AWS (moto reads them from the children's outputs).
    Call the returned function to undo."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer import result_writer_decl
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer.resource_eval import (
        resource_eval_s3,
    )

    cls = resource_eval_s3.ResourceEvalS3
    original = cls.__dict__["_handle_put_object"]
    if getattr(original, "_data_pipeline_results", False):
        return lambda: None

    def _handle_put_object(env: Any, resource_runtime_part: Any, state_credentials: Any) -> None:
        parameters = env.stack.pop()
        outputs = env.stack.pop()
        s3_client = cls._get_s3_client(resource_runtime_part=resource_runtime_part,
                                       state_credentials=state_credentials)
        map_run_record = env.map_run_record_pool_manager.get_all().pop()
        map_run_arn = map_run_record.map_run_arn
        prefix = parameters.get("Prefix") or ""
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        folder = prefix + map_run_arn.split(":")[-1] + "/"
        succeeded = []
        for number, start in enumerate(range(0, len(outputs or []), RESULT_WRITER_ITEMS_PER_FILE)):
            chunk = outputs[start:start + RESULT_WRITER_ITEMS_PER_FILE]
            body = json.dumps([{"Name": f"{start + i}", "Status": "SUCCEEDED", "MapRunArn": map_run_arn,
                                "Output": json.dumps(output, ensure_ascii=False)}
                               for i, output in enumerate(chunk)], ensure_ascii=False).encode("utf-8")
            key = f"{folder}SUCCEEDED_{number}.json"
            s3_client.put_object(Bucket=parameters["Bucket"], Key=key, Body=body)
            succeeded.append({"Key": key, "Size": len(body)})
        manifest = {"DestinationBucket": parameters["Bucket"], "MapRunArn": map_run_arn,
                    "ResultFiles": {"FAILED": [], "PENDING": [], "SUCCEEDED": succeeded}}
        key = folder + "manifest.json"
        s3_client.put_object(Bucket=parameters["Bucket"], Key=key,
                             Body=json.dumps(manifest, indent=2).encode("utf-8"))
        env.stack.append({"MapRunArn": map_run_arn, "ResultWriterDetails": {"Bucket": parameters["Bucket"],
                                                                            "Key": key}})

    writer = result_writer_decl.ResultWriter
    original_eval = writer._eval_body

    def _eval_body(self: Any, env: Any) -> None:
        env.stack.append(env.states.get_input())  # the Map state's input, above the children's outputs
        self.parargs.eval(env=env)
        parameters = env.stack.pop()
        env.stack.pop()
        env.stack.append(parameters)
        self.resource_eval.eval_resource(env=env)

    _handle_put_object._data_pipeline_results = True  # type: ignore[attr-defined]
    cls._handle_put_object = staticmethod(_handle_put_object)  # type: ignore[method-assign]
    writer._eval_body = _eval_body  # type: ignore[method-assign]

    def undo() -> None:
        cls._handle_put_object = original  # type: ignore[method-assign]
        writer._eval_body = original_eval  # type: ignore[method-assign]

    return undo


def read_moto_item_reader_json_objects() -> Callable[[], None]:
    """An ItemReader `arn:aws:states:::s3:getObject` without `ReaderConfig` reads the object as a JSON array on
    AWS (the JSON-file case of Distributed Map); moto's port only parses it when `ReaderConfig.InputType` says
    JSON and otherwise hands the Map a string. This patch parses it as AWS does (an object that is not a JSON
    array fails the Map with States.ItemReaderFailed). Call the returned function to undo."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.item_reader.eval.resource_output_transformer.transformer_json import (  # noqa: E501
        ResourceOutputTransformerJson,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.item_reader.item_reader_decl import ItemReader

    original = ItemReader._eval_body
    if getattr(original, "_data_pipeline_json", False):
        return lambda: None

    def _eval_body(self: Any, env: Any) -> None:
        if self.reader_config is not None:
            original(self, env)
            return
        if self.parargs:
            self.parargs.eval(env=env)
        else:
            env.stack.append({})
        self.resource_eval.eval_resource(env=env)
        if isinstance(env.stack[-1], str):  # the object's text: parsed like InputType JSON, all items
            env.stack.append({"MaxItemsValue": None})
            ResourceOutputTransformerJson().eval(env=env)

    _eval_body._data_pipeline_json = True  # type: ignore[attr-defined]
    ItemReader._eval_body = _eval_body  # type: ignore[method-assign]

    def undo() -> None:
        ItemReader._eval_body = original  # type: ignore[method-assign]

    return undo
