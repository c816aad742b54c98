"""Versions of a task's Question→SQL pair file, as the review edits them.

Version 1 is the file the run wrote (qa_generation, maybe rewritten by sql_validation): the one
`work/pair_file.txt` names when no review happened. A review save writes the whole new list as a new file
(`qs_{db}_{ts}_v002_pair.json`, the previous ones kept) plus its change log (`qs_{db}_{ts}_v002_changes.json`:
who, when, what), records both in the manifest `work/pair_versions.json` and points `work/pair_file.txt` at the
new file, so every step that reads the current pair file (sql_validation, training_load) reads the latest
version, and the file listing marks it primary (the newest pair file). A new qa_generation run writes a new
pointer (and deletes the old pair files): a manifest whose files the pointer does not name is stale and the
pointer's file is version 1 again.
"""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.errors import FileNotFound, PairFileMissing, PairsVersionConflict
from chalicelib.steps.qa_generation import PAIR_FILE_POINTER
from chalicelib.stores.files import TaskFiles

MANIFEST = "work/pair_versions.json"
PAIR_SUFFIX = "_pair.json"
RUN_AUTHOR = "data_pipeline"
RUN_SUMMARY = "written by the run (qa_generation, sql_validation)"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def version_file(base: str, version: int, kind: str = "pair") -> str:
    """`qs_db_ts_pair.json` -> `qs_db_ts_v002_pair.json` (kind "pair") or `qs_db_ts_v002_changes.json`."""
    stem = base[:-len(PAIR_SUFFIX)] if base.endswith(PAIR_SUFFIX) else base.rsplit(".", 1)[0]
    return f"{stem}_v{version:03d}_{kind}.json"


@dataclass
class Versions:
    base_file: str
    versions: list[dict[str, Any]]

    @property
    def latest(self) -> dict[str, Any]:
        return self.versions[-1]

    def get(self, version: int) -> dict[str, Any]:
        for entry in self.versions:
            if entry["version"] == version:
                return entry
        known = ", ".join(str(v["version"]) for v in self.versions)
        raise FileNotFound(f"the pair file has no version {version} (versions: {known})", invalid_params=["version"])

    def to_dict(self) -> dict[str, Any]:
        return {"base_file": self.base_file, "versions": self.versions}


def load_versions(files: TaskFiles) -> Versions:
    """The pair file's versions, oldest first; FileNotFound when the task has no pair file."""
    if not files.exists(PAIR_FILE_POINTER):
        raise PairFileMissing(f"task {files.task_id} has no Question-SQL pair file: run qa_generation first")
    current = files.get_text(PAIR_FILE_POINTER).strip()
    if files.exists(MANIFEST):
        stored = json.loads(files.get_text(MANIFEST))
        if any(v.get("file_name") == current for v in stored.get("versions", [])):
            return Versions(stored["base_file"], stored["versions"])
    if not files.exists(current):
        raise PairFileMissing(f"task {files.task_id} has no Question-SQL pair file ({current} is missing)")
    written = files.store.head(files.task_id, current)["last_modified"]
    first = {"version": 1, "file_name": current, "created_at": written.strftime("%Y-%m-%dT%H:%M:%S"),
             "author": RUN_AUTHOR, "summary": RUN_SUMMARY, "change_log": None}
    return Versions(current, [first])


def read_pairs(files: TaskFiles, file_name: str) -> list[dict[str, str]]:
    data = json.loads(files.get_text(file_name))
    return [{"question": str(item.get("question", "")), "sql": str(item.get("sql", ""))} for item in data]


def diff_pairs(before: list[dict[str, str]], after: list[dict[str, str]]) -> list[dict[str, Any]]:
    """What changed from `before` to `after`: edit (a pair changed in place), add, remove. `index` is the
    position in `after` for edit/add and in `before` for remove; `base_index` the position in `before`."""
    keys_before = [(p["question"], p["sql"]) for p in before]
    keys_after = [(p["question"], p["sql"]) for p in after]
    changes: list[dict[str, Any]] = []
    matcher = difflib.SequenceMatcher(a=keys_before, b=keys_after, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        paired = min(i2 - i1, j2 - j1) if tag == "replace" else 0
        for k in range(paired):
            changes.append({"op": "edit", "index": j1 + k, "base_index": i1 + k, "before": before[i1 + k],
                            "after": after[j1 + k]})
        for i in range(i1 + paired, i2):
            changes.append({"op": "remove", "index": i, "base_index": i, "before": before[i], "after": None})
        for j in range(j1 + paired, j2):
            changes.append({"op": "add", "index": j, "base_index": None, "before": None, "after": after[j]})
    return changes


def sql_to_check(changes: list[dict[str, Any]]) -> list[tuple[int, str]]:
    """(index in the new list, SQL) of every added pair and every edit whose SQL changed."""
    return [(c["index"], c["after"]["sql"]) for c in changes
            if c["op"] == "add" or (c["op"] == "edit" and c["after"]["sql"] != c["before"]["sql"])]


def summarize(changes: list[dict[str, Any]]) -> str:
    counts = {op: sum(c["op"] == op for c in changes) for op in ("edit", "add", "remove")}
    return ", ".join(f"{n} {op}{'s' if n != 1 else ''}" for op, n in counts.items() if n) or "no change"


def check_base(versions: Versions, base_version: int) -> None:
    latest = versions.latest["version"]
    if base_version != latest:
        raise PairsVersionConflict(
            f"base_version {base_version} is not the latest version of the pair file ({latest}, saved by "
            f"{versions.latest['author']} at {versions.latest['created_at']}): reload it and edit version {latest}",
            invalid_params=["base_version"])


def _put_new(files: TaskFiles, name: str, text: str) -> None:
    """Write `name` only when it does not exist yet (two saves on the same base: one wins, the other is a 409)."""
    try:
        files.store.s3.put_object(Bucket=files.store.bucket, Key=files.store.key(files.task_id, name),
                                  Body=text.encode("utf-8"), ContentType="application/json; charset=utf-8",
                                  IfNoneMatch="*")
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) in ("PreconditionFailed", "412",
                                                               "ConditionalRequestConflict"):
            raise PairsVersionConflict(f"another save wrote version file {name} first: reload the pair file",
                                       invalid_params=["base_version"]) from None
        raise


def save_version(files: TaskFiles, versions: Versions, author: str, pairs: list[dict[str, str]],
                 changes: list[dict[str, Any]]) -> dict[str, Any]:
    """Write the new version, its change log, the manifest and the pointer; returns the new manifest entry."""
    base = versions.latest
    number = base["version"] + 1
    name = version_file(versions.base_file, number)
    log_name = version_file(versions.base_file, number, "changes")
    created = _now()
    entry = {"version": number, "file_name": name, "created_at": created, "author": author,
             "summary": summarize(changes), "change_log": log_name}
    _put_new(files, name, json.dumps(pairs, ensure_ascii=False, indent=2) + "\n")
    files.put_text(log_name, json.dumps({
        "version": number, "base_version": base["version"], "base_file": base["file_name"], "file_name": name,
        "author": author, "created_at": created, "summary": entry["summary"], "changes": changes,
    }, ensure_ascii=False, indent=2) + "\n")
    files.put_text(MANIFEST, json.dumps(Versions(versions.base_file, [*versions.versions, entry]).to_dict(),
                                        ensure_ascii=False))
    files.put_text(PAIR_FILE_POINTER, name)
    return entry
