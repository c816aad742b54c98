"""qa_generation at scale: the TableDocs are streamed from ddl_generation's batch files (work/docs.json is never
read), theme extraction keeps compact docs, and each theme's pairs read only that theme's doc file."""
from __future__ import annotations

import json
from types import SimpleNamespace

from chalicelib.pipeline import qa
from chalicelib.pipeline.models import ColumnMeta, ForeignKey, TableDoc, TableMeta, TableRef, Theme
from chalicelib.providers.heuristic import HeuristicProvider
from chalicelib.steps import qa_generation
from chalicelib.steps.ddl_generation import DOCS_BUNDLE, TABLE_DOCS
from chalicelib.stores.files import TaskFiles

TABLES, CHAIN, PER_BATCH = 60, 3, 10


def _column(name: str, data_type: str, ordinal: int, pk: bool = False) -> ColumnMeta:
    return ColumnMeta(name=name, data_type=data_type, udt_name=data_type, type_kind="base", max_length=None,
                      nullable=not pk, default=None, comment=None, is_primary_key=pk, ordinal=ordinal)


def _doc(index: int) -> TableDoc:
    name = f"t{index:03d}"
    columns = [_column("id", "integer", 1, pk=True), _column("amount", "numeric", 2)]
    keys = []
    if index % CHAIN:
        columns.append(_column("parent_id", "integer", 3))
        keys.append(ForeignKey(f"fk_{name}", ["parent_id"], "public", f"t{index - 1:03d}", ["id"]))
    meta = TableMeta(ref=TableRef("public", name), comment=f"table {index}", kind="table", columns=columns,
                     primary_key=["id"], foreign_keys=keys, row_count=3, row_count_exact=True)
    return TableDoc(meta=meta, table_comment=f"table {index}", column_comments={"amount": "amount of it"},
                    comment_sources={"": "database"}, enums={}, samples=[{"id": "1", "amount": "2.50"}],
                    column_values={"amount": ["2.50", "5.00"]}, value_ranges={"amount": ["2.50", "7.50"]})


class ReadCountingFiles(TaskFiles):
    """The task's files, remembering which ones were read."""

    def __init__(self, task_id, store):
        super().__init__(task_id, store)
        self.read: list[str] = []

    def get_text(self, name):
        self.read.append(name)
        return super().get_text(name)


def _run(files_store) -> SimpleNamespace:
    run = SimpleNamespace(files=ReadCountingFiles("task_stream", files_store))
    # Batch files as ddl_generation writes them (named after their first table), in reverse order of writing.
    for start in reversed(range(0, TABLES, PER_BATCH)):
        docs = [_doc(i).to_dict() for i in range(start, start + PER_BATCH)]
        run.files.put_text(f"{TABLE_DOCS}{docs[0]['meta']['ref']['name']}.json",
                           json.dumps({"docs": docs, "files": {}}, ensure_ascii=False))
    run.files.put_text(DOCS_BUNDLE, "not the bundle: qa_generation must not read it")
    return run


def test_themes_work_on_compact_streamed_docs(files):
    run = _run(files)
    docs, where = qa_generation.theme_docs_of_schema(run)
    assert [d.meta.ref.name for d in docs] == [f"t{i:03d}" for i in range(TABLES)]  # file-name order
    assert DOCS_BUNDLE not in run.files.read
    assert all(not d.samples and not d.column_values and not d.value_ranges for d in docs)
    assert docs[4].meta.relationships[0].ref_table == "t003" and docs[4].column_comments == {"amount": "amount of it"}
    assert where["public.t015"] == f"{TABLE_DOCS}t010.json"
    # The heuristic's themes from compact docs are those from the full docs.
    full = [_doc(i) for i in range(TABLES)]
    assert qa.extract_themes(HeuristicProvider(), docs, "", 5) == qa.extract_themes(HeuristicProvider(), full, "", 5)


def test_a_theme_reads_only_its_tables_and_their_references(files):
    run = _run(files)
    docs, where = qa_generation.theme_docs_of_schema(run)
    themes = [Theme("a", "", ["public.t025", "public.t031"], [], []), Theme("b", "", ["public.t000"], [], [])]
    run.files.read.clear()
    qa_generation.write_theme_docs(run, themes, docs, where)
    # Only the batch files holding t024/t025 (t020.json) and t030/t031 (t030.json), and t000 (t000.json).
    assert sorted(run.files.read) == [f"{TABLE_DOCS}t000.json", f"{TABLE_DOCS}t020.json", f"{TABLE_DOCS}t030.json"]
    first = qa_generation.read_theme_docs(run, 0)
    assert [d.meta.ref.name for d in first] == ["t024", "t025", "t030", "t031"]
    assert first[1] == _doc(25)  # in full: samples, values and ranges for the pair prompts
    assert [d.meta.ref.name for d in qa_generation.read_theme_docs(run, 1)] == ["t000"]
    pairs = qa.generate_theme_pairs(HeuristicProvider(), themes[0], first, "", 10)
    assert pairs and all("t025" in p.sql or "t031" in p.sql for p in pairs)


def test_doc_files_are_written_a_bounded_number_of_docs_at_a_time(files, monkeypatch):
    """With room for few docs at once, the doc files are the same; the batch files are read again per chunk."""
    run = _run(files)
    docs, where = qa_generation.theme_docs_of_schema(run)
    outputs = [(f"work/test/{i}.json", [f"public.t{i * 7:03d}", f"public.t{i * 7 + 1:03d}", "public.nothing"])
               for i in range(8)]
    qa_generation.write_doc_files(run, outputs, where)
    whole = {name: run.files.get_text(name) for name, _names in outputs}
    monkeypatch.setattr(qa_generation, "DOCS_PER_WRITE", 3)
    run.files.read.clear()
    qa_generation.write_doc_files(run, outputs, where)
    assert {name: run.files.get_text(name) for name, _names in outputs} == whole
    assert [d["meta"]["ref"]["name"] for d in json.loads(whole["work/test/1.json"])] == ["t007", "t008"]
    # Eight chunks of one output (two docs each; a second output would make four): 8 x 1 or 2 batch files.
    reads = [name for name in run.files.read if name.startswith(TABLE_DOCS)]
    assert len(reads) == 8 + sum(1 for i in range(8) if (i * 7) // PER_BATCH != (i * 7 + 1) // PER_BATCH)
