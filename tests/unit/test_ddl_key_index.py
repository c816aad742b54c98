"""A DDL batch reuses the task's key index while the plan's keys file is the same one: reading and indexing every
table's keys in every batch made ddl_generation quadratic in the tables (measured at 10,000 tables: four fifths
of its CPU in KeyIndex.from_rows). A new plan (a new file) is always read again, and so is another task."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from chalicelib.steps import ddl_generation
from chalicelib.stores.files import TaskFiles


def _rows(*tables: str) -> list[list[str | None]]:
    return [["public", table, "id", "int4", "int4", None, "primary"] for table in tables]


@pytest.fixture
def reads(files):
    """The keys-file GetObject calls made through `files`' client."""
    seen: list[str] = []
    files.s3.meta.events.register("before-call.s3.GetObject",
                                  lambda params, **_: seen.append(params["url_path"]))
    ddl_generation._KEY_INDEX.clear()
    yield seen
    ddl_generation._KEY_INDEX.clear()


def _run(files, task_id: str) -> SimpleNamespace:
    return SimpleNamespace(task_id=task_id, files=TaskFiles(task_id, files))


def _keys(run) -> set[str]:
    index = ddl_generation._candidate_keys(run, [], connections=None, from_plan=True)
    return {key.ref.name for key in index.keys}


def test_the_index_is_read_once_per_keys_file(files, reads):
    run = _run(files, "task_20260101_000001")
    run.files.put_text(ddl_generation.KEYS_FILE, json.dumps(_rows("orders", "customers")))
    assert [_keys(run) for _ in range(3)] == [{"orders", "customers"}] * 3
    assert len([k for k in reads if k.endswith("keys.json")]) == 1  # was 3: one whole read per batch

    # A new plan writes a new file: the next batch reads it, never the stale index.
    run.files.put_text(ddl_generation.KEYS_FILE, json.dumps(_rows("orders", "customers", "regions")))
    assert _keys(run) == {"orders", "customers", "regions"}
    assert len([k for k in reads if k.endswith("keys.json")]) == 2


def test_another_task_never_sees_the_first_ones_index(files, reads):
    first, second = _run(files, "task_20260101_000001"), _run(files, "task_20260101_000002")
    first.files.put_text(ddl_generation.KEYS_FILE, json.dumps(_rows("orders")))
    second.files.put_text(ddl_generation.KEYS_FILE, json.dumps(_rows("orders")))  # the same bytes, the same ETag
    assert _keys(first) == {"orders"} and _keys(second) == {"orders"}
    assert len([k for k in reads if k.endswith("keys.json")]) == 2
    assert ddl_generation._KEY_INDEX[0][0] == second.task_id  # one index kept: memory stays bounded
