"""Progress of fan-out steps: per-item records and done/failed counters written by concurrent Map iterations,
counted once when Step Functions delivers an iteration twice. Mixed into TaskStore.

Per step, items that no write of a batch makes grow with the number of tables:
- the task item holds the step's records (the first RECORDS_KEPT items of each collection) and its other
  progress fields (total, current table...): bounded;
- the step's counts item (`{task_id}#progress#{step}`: not in the task listing's indexes, which need `entity`
  and `status`) holds the counters a step sets (its plan, its merge) and how many records the task item was given
  room for;
- MARK_SHARDS shard items (`…#progress#{step}#{n}`) hold what the batches counted: each chunk adds its done/failed
  to the shard its id hashes to and leaves its id there (the re-delivery mark, 16 characters), in one conditional
  write. A single item holding every mark grew by one per batch (16 KB at 10,000 tables in batches of ten): every
  update of it cost DynamoDB a write unit per KB of the whole item and moto a walk of every mark, so the last
  batches of a wide run paid for all the earlier ones. A shard holds an eighth of the marks.
A step's `done` / `failed` are the counts item's plus its shards'. TaskStore.get_task merges them into
`progress.{step}`; a task written before the counts items existed keeps its counters on the task item and is
shown as it was."""
from __future__ import annotations

import hashlib
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.stores.task_items import conditional_failed, invalid_path, step_key

RECORDS_PER_UPDATE = 40  # progress records per UpdateItem: its expression stays well under DynamoDB's 4 KB
# Per-item records kept on the task item per collection (the first ones to finish); the done/failed counters
# count every item. Beyond that the records live in the step's S3 files, so the task item has the same size at any
# table count (the chunk ids that keep a re-delivered chunk from being counted twice, 16 characters per chunk of up
# to RECORDS_PER_UPDATE items, are on the step's counts item: 16 KB at 10,000 tables in batches of ten).
RECORDS_KEPT = 100
HIDDEN = "_"  # progress keys starting with it are bookkeeping, not shown by the status view
COUNTERS = ("done", "failed")  # progress fields kept on the step's counts item
COUNTS_KEY = "{task_id}#progress#{step}"
# Shards of a step's chunk counts and re-delivery marks: at 10,000 tables in batches of ten, 125 marks (2 KB) each.
# A status read asks for 1 + MARK_SHARDS items per step (BatchGetItem: at most 100 keys, 36 for the four steps).
MARK_SHARDS = 8


def counts_key(task_id: str, step: str) -> str:
    return COUNTS_KEY.format(task_id=task_id, step=step_key(step))


def shard_key(task_id: str, step: str, shard: int) -> str:
    return f"{counts_key(task_id, step)}#{shard}"


def step_count_keys(task_id: str, step: str) -> list[str]:
    """The step's counts item and its shards: what its counters are summed from."""
    return [counts_key(task_id, step), *(shard_key(task_id, step, n) for n in range(MARK_SHARDS))]


def sum_counters(items: list[dict[str, Any]]) -> dict[str, Any]:
    """done / failed over a step's counts item and shards (a counter none of them holds stays absent)."""
    summed: dict[str, Any] = {}
    for item in items:
        for counter in COUNTERS:
            if counter in item:
                summed[counter] = summed.get(counter, 0) + item[counter]
    return summed


def merge_counts(item: dict[str, Any], counts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The task item with each step's counters (done, failed) taken from its counts item where it has one."""
    if not counts:
        return item
    progress = {step: dict(value) if isinstance(value, dict) else value
                for step, value in (item.get("progress") or {}).items()}
    for step, found in counts.items():
        shown = progress.setdefault(step, {})
        if isinstance(shown, dict):
            shown.update({k: found[k] for k in COUNTERS if k in found})
    return {**item, "progress": progress}


def _chunk_id(records: dict[str, Any]) -> str:
    return hashlib.sha1("\x1f".join(sorted(records)).encode("utf-8"), usedforsecurity=False).hexdigest()[:16]


class TaskProgressWrites:
    """Needs `_update(key, expression, values, names, *, touch=, condition=)`, `_batch_read(keys, fields)` and
    `_delete_items(keys)` from the class it is mixed into."""

    _update: Any
    _batch_read: Any
    _delete_items: Any

    def update_progress(self, task_id: str, step: str, progress: dict[str, Any]) -> None:
        """Merge `progress` into progress.{step}; dict values are merged one level deeper (per key), an empty
        dict makes sure that map exists without touching it. `done` and `failed` are set on the step's counts item.

        One UpdateItem when progress.{step} exists (the usual case while a step runs: the claim creates it);
        the missing maps are created first only when DynamoDB refuses the document path."""
        counters = {k: progress[k] for k in COUNTERS if k in progress}
        if counters:
            self._set_counts(task_id, step, counters)
            progress = {k: v for k, v in progress.items() if k not in COUNTERS}
            if not progress:
                return
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
        names = {"#s": step_key(step), "#c": collection}
        values: dict[str, Any] = {}
        sets = []
        for i, (key, (record, _ok)) in enumerate(records.items()):
            names[f"#k{i}"] = key
            values[f":r{i}"] = record
            sets.append(f"progress.#s.#c.#k{i} = :r{i}")
        record = "SET " + ", ".join(sets) + ", updated_at = :now"

        def write(condition: str) -> bool:
            for attempt in (1, 2):
                try:
                    self._update(task_id, record, values, names, condition=condition)
                except ClientError as exc:
                    if conditional_failed(exc):
                        return False
                    if attempt == 2 or not invalid_path(exc):
                        raise
                    self._ensure_progress_maps(task_id, step, [collection])  # then once more
                else:
                    return True
            return False  # unreachable

        if counted and not self._count_chunk(task_id, step, collection, records):
            # A re-delivered chunk: counted already; its records are replaced where they were kept.
            write("attribute_exists(progress.#s.#c.#k0)")
            return
        if self._reserve_room(task_id, step, collection, len(records)):
            write("attribute_exists(task_id)")
        elif not counted:  # records of items counted elsewhere: replaced where they were kept
            write("attribute_exists(progress.#s.#c.#k0)")

    def _count_chunk(self, task_id: str, step: str, collection: str,
                     records: dict[str, tuple[dict[str, Any], bool]]) -> bool:
        """Add the chunk's done/failed to the shard its id hashes to and leave the id there, in one conditional
        write: False when the chunk was counted before (Step Functions re-delivered its iteration; the same id
        always goes to the same shard)."""
        done = sum(1 for _record, ok in records.values() if ok)
        chunk = _chunk_id(records)
        names = {"#done": "done", "#failed": "failed", "#marks": f"{HIDDEN}{collection}_counted"}
        values = {":zero": 0, ":done": done, ":failed": len(records) - done, ":chunk": {chunk}, ":chunkid": chunk}
        try:
            self._update(shard_key(task_id, step, int(chunk, 16) % MARK_SHARDS),
                         "SET #done = if_not_exists(#done, :zero) + :done, "
                         "#failed = if_not_exists(#failed, :zero) + :failed ADD #marks :chunk",
                         values, names, touch=False,
                         condition="attribute_not_exists(#marks) OR NOT contains(#marks, :chunkid)")
        except ClientError as exc:
            if not conditional_failed(exc):
                raise
            return False
        return True

    def _reserve_room(self, task_id: str, step: str, collection: str, count: int) -> bool:
        """Room for `count` more records on the task item while fewer than RECORDS_KEPT are kept (the first items
        to finish keep their records; the counters count every item)."""
        names = {"#kept": f"{HIDDEN}{collection}_kept"}
        try:
            self._update(counts_key(task_id, step), "SET #kept = if_not_exists(#kept, :zero) + :n",
                         {":zero": 0, ":n": count, ":max": RECORDS_KEPT}, names, touch=False,
                         condition="attribute_not_exists(#kept) OR #kept < :max")
        except ClientError as exc:
            if not conditional_failed(exc):
                raise
            return False
        return True

    def _set_counts(self, task_id: str, step: str, counters: dict[str, Any]) -> None:
        """The step's counters become `counters`: set on its counts item, and what its shards counted for them is
        removed. A step sets its counters when none of its batches runs (its plan, before them; its merge, after
        them), so no chunk is counted in between."""
        names = {f"#n{i}": k for i, k in enumerate(counters)}
        values = {f":v{i}": v for i, v in enumerate(counters.values())}
        self._update(counts_key(task_id, step), "SET " + ", ".join(f"#n{i} = :v{i}" for i in range(len(counters))),
                     values, names, touch=False, condition=None)
        shards = [shard_key(task_id, step, n) for n in range(MARK_SHARDS)]
        # One read finds the shards that counted any (none at a plan: the claim deleted them), so a set costs a
        # write per shard only where there is something to remove.
        counted = self._batch_read(shards, ("task_id", *counters))
        for key in shards:
            if any(k in counted.get(key, {}) for k in counters):
                self._update(key, "REMOVE " + ", ".join(names), {}, names, touch=False, condition=None)

    def reset_counts(self, task_id: str, steps: list[str]) -> None:
        """A new run of `steps` counts from nothing: their counts items and shards are deleted."""
        self._delete_items([key for step in steps for key in step_count_keys(task_id, step)])

    def _ensure_progress_maps(self, task_id: str, step: str, children: list[str]) -> None:
        """Create progress.{step} and the maps progress.{step}.{child} where missing (nested SETs need them)."""
        self._update(task_id, "SET progress.#s = if_not_exists(progress.#s, :empty)", {":empty": {}},
                     {"#s": step_key(step)}, touch=False)
        if children:
            ensure = ", ".join(f"progress.#s.#n{i} = if_not_exists(progress.#s.#n{i}, :empty)"
                               for i in range(len(children)))
            self._update(task_id, f"SET {ensure}", {":empty": {}},
                         {"#s": step_key(step), **{f"#n{i}": k for i, k in enumerate(children)}}, touch=False)
