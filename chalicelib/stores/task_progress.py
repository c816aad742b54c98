"""Progress of fan-out steps on the task item: per-item records and done/failed counters written by concurrent
Map iterations, counted once when Step Functions delivers an iteration twice. Mixed into TaskStore."""
from __future__ import annotations

import hashlib
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.stores.task_items import conditional_failed, invalid_path, step_key

RECORDS_PER_UPDATE = 40  # progress records per UpdateItem: its expression stays well under DynamoDB's 4 KB
# Per-item records kept on the task item per collection (the first ones to finish); the done/failed counters
# count every item. Beyond that the records live in the step's S3 files, so the item stays far from DynamoDB's
# 400 KB at any table count (the chunk ids that keep a re-delivered chunk from being counted twice: 16
# characters per chunk of up to RECORDS_PER_UPDATE items).
RECORDS_KEPT = 100
HIDDEN = "_"  # progress keys starting with it are bookkeeping, not shown by the status view


def _chunk_id(records: dict[str, Any]) -> str:
    return hashlib.sha1("\x1f".join(sorted(records)).encode("utf-8"), usedforsecurity=False).hexdigest()[:16]


class TaskProgressWrites:
    """Needs `_update(task_id, expression, values, names, *, touch=, condition=)` from the class it is mixed into."""

    _update: Any

    def update_progress(self, task_id: str, step: str, progress: dict[str, Any]) -> None:
        """Merge `progress` into progress.{step}; dict values are merged one level deeper (per key), an empty
        dict makes sure that map exists without touching it.

        One UpdateItem when progress.{step} exists (the usual case while a step runs: the claim creates it);
        the missing maps are created first only when DynamoDB refuses the document path."""
        names = {"#s": step_key(step)}
        nested = [k for k, v in progress.items() if isinstance(v, dict)]
        sets, values = [], {}
        for i, (key, value) in enumerate(progress.items()):
            names[f"#k{i}"] = str(key)
            if isinstance(value, dict) and not value:
                values[":empty"] = {}
                sets.append(f"progress.#s.#k{i} = if_not_exists(progress.#s.#k{i}, :empty)")
            elif isinstance(value, dict):
                for j, (sub, sub_value) in enumerate(value.items()):
                    names[f"#k{i}_{j}"] = str(sub)
                    values[f":v{i}_{j}"] = sub_value
                    sets.append(f"progress.#s.#k{i}.#k{i}_{j} = :v{i}_{j}")
            else:
                values[f":v{i}"] = value
                sets.append(f"progress.#s.#k{i} = :v{i}")
        if not sets:
            self._ensure_progress_maps(task_id, step, [])
            return
        expression = "SET " + ", ".join(sets) + ", updated_at = :now"
        try:
            self._update(task_id, expression, values, names)
            return
        except ClientError as exc:
            if not invalid_path(exc):
                raise
        self._ensure_progress_maps(task_id, step, nested)
        self._update(task_id, expression, values, names)

    def record_item_progress(self, task_id: str, step: str, collection: str, key: str, record: dict[str, Any],
                             *, ok: bool) -> None:
        """One finished item of a fan-out (a table, a theme): see record_items_progress."""
        self.record_items_progress(task_id, step, collection, {key: (record, ok)})

    def record_items_progress(self, task_id: str, step: str, collection: str,
                              records: dict[str, tuple[dict[str, Any], bool]], *, counted: bool = True) -> None:
        """Finished items of a fan-out ({key: (record, ok)}, e.g. the tables of one batch), one UpdateItem per
        RECORDS_PER_UPDATE of them (DynamoDB caps an expression at 4 KB): each stored under
        progress.{step}.{collection}.{key}, and unless `counted` is False the `done` / `failed` counters
        incremented atomically (Map iterations run concurrently). Counted once: when the first key of a chunk
        is already recorded (a re-delivered Map iteration, Step Functions being at-least-once) its records are
        only replaced. The maps are created first when progress.{step}.{collection} does not exist yet."""
        items = list(records.items())
        for start in range(0, len(items), RECORDS_PER_UPDATE):
            self._record_chunk(task_id, step, collection, dict(items[start:start + RECORDS_PER_UPDATE]), counted)

    def _record_chunk(self, task_id: str, step: str, collection: str,
                      records: dict[str, tuple[dict[str, Any], bool]], counted: bool) -> None:
        names = {"#s": step_key(step), "#c": collection, "#kept": f"{HIDDEN}{collection}_kept",
                 "#marks": f"{HIDDEN}{collection}_counted"}
        values: dict[str, Any] = {":zero": 0, ":max": RECORDS_KEPT, ":n": len(records),
                                  ":chunk": {_chunk_id(records)}}
        sets = []
        for i, (key, (record, _ok)) in enumerate(records.items()):
            names[f"#k{i}"] = key
            values[f":r{i}"] = record
            sets.append(f"progress.#s.#c.#k{i} = :r{i}")
        counters = []
        done = sum(1 for _record, ok in records.values() if ok)
        for counter, amount in (("done", done), ("failed", len(records) - done)):
            if amount:
                names[f"#{counter}"] = counter
                values[f":{counter}"] = amount
                counters.append(f"progress.#s.#{counter} = if_not_exists(progress.#s.#{counter}, :zero) + :{counter}")
        kept = "progress.#s.#kept = if_not_exists(progress.#s.#kept, :zero) + :n"
        room = "(attribute_not_exists(progress.#s.#kept) OR progress.#s.#kept < :max)"
        fresh = "attribute_exists(task_id) AND attribute_not_exists(progress.#s.#c.#k0)"
        replace = "SET " + ", ".join(sets) + ", updated_at = :now"

        def attempt(expression: str, condition: str) -> bool:
            try:
                self._update(task_id, expression, values, names, condition=condition)
            except ClientError as exc:
                if not conditional_failed(exc):
                    raise
                return False
            return True

        def record_them() -> None:
            if not counted:
                # Records only (their counts were taken elsewhere), while the collection has room.
                if not attempt("SET " + ", ".join(sets + [kept]) + ", updated_at = :now", f"{fresh} AND {room}"):
                    attempt(replace, "attribute_exists(progress.#s.#c.#k0)")
                return
            # 1. the records and their counts, while fewer than RECORDS_KEPT records are kept on the item;
            if attempt("SET " + ", ".join(sets + counters + [kept]) + ", updated_at = :now", f"{fresh} AND {room}"):
                return
            # 2. the item is full: counts only, the chunk remembered so that a re-delivery is not counted again;
            if attempt("SET " + ", ".join(counters) + ", updated_at = :now ADD progress.#s.#marks :chunk",
                       f"{fresh} AND (attribute_not_exists(progress.#s.#marks) "
                       "OR NOT contains(progress.#s.#marks, :chunkid))"):
                return
            # 3. a re-delivered chunk: its kept records are replaced, nothing counted twice.
            attempt(replace, "attribute_exists(progress.#s.#c.#k0)")

        values[":chunkid"] = _chunk_id(records)
        try:
            record_them()
            return
        except ClientError as exc:
            if not invalid_path(exc):
                raise
        self._ensure_progress_maps(task_id, step, [collection])
        record_them()

    def _ensure_progress_maps(self, task_id: str, step: str, children: list[str]) -> None:
        """Create progress.{step} and the maps progress.{step}.{child} where missing (nested SETs need them)."""
        self._update(task_id, "SET progress.#s = if_not_exists(progress.#s, :empty)", {":empty": {}},
                     {"#s": step_key(step)}, touch=False)
        if children:
            ensure = ", ".join(f"progress.#s.#n{i} = if_not_exists(progress.#s.#n{i}, :empty)"
                               for i in range(len(children)))
            self._update(task_id, f"SET {ensure}", {":empty": {}},
                         {"#s": step_key(step), **{f"#n{i}": k for i, k in enumerate(children)}}, touch=False)
