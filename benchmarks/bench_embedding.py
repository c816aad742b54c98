"""embedding: throughput of the default offline embedding model vs the numpy all-MiniLM-L6-v2 (the earlier
default), same texts, same run, one process.

- documents: 200 DDL-like texts (a table's Chinese or English header comments and 12-24 commented columns, as the
  product's `.ddl` files look), embedded in batches of 64 as training_load embeds them (the `passage` side);
- questions: the 144 questions of tests/fixtures/questions, embedded one request at a time as a retrieval client
  asks them (the `query` side).

Each model is loaded (and warmed on one text) before it is timed; the best of two passes counts. Other offline
models installed (USE multilingual) are printed too. ratio > 1: the default model is faster.

    python -m benchmarks.bench_embedding [--documents N]
"""
from __future__ import annotations

import argparse
import random
import time
from typing import Any

from benchmarks.common import report
from benchmarks.questions import DATABASES, load_questions

_ZH_WORDS = ["服务区", "营业额", "订单", "支付", "车辆", "档口", "公司", "路段", "统计", "日期", "金额", "数量", "类型",
             "状态", "编码", "名称"]
_EN_WORDS = ["order", "customer", "product", "amount", "date", "status", "region", "supplier", "price", "quantity",
             "category", "code", "name", "total"]
_TYPES = ["varchar(255)", "integer", "numeric(19,4)", "date", "timestamp(3)", "bigint", "boolean"]


def documents(count: int) -> list[str]:
    rng = random.Random(20261201)
    out = []
    for i in range(count):
        chinese = i % 2 == 0
        words = _ZH_WORDS if chinese else _EN_WORDS
        title = "".join(rng.sample(words, 2)) if chinese else " ".join(rng.sample(words, 2))
        description = f"-- 描述: {title}信息，主键 id" if chinese else f"-- Description: {title} records; key id"
        lines = [f"-- {'中文名' if chinese else 'Name'}: {title}", description,
                 f"create table t_{i} ("]
        for j in range(rng.randint(12, 24)):
            note = "".join(rng.sample(words, 2)) if chinese else " ".join(rng.sample(words, 2))
            lines.append(f"  col_{j} {rng.choice(_TYPES)},  -- {note}")
        lines.append("  primary key (id)\n);")
        out.append("\n".join(lines))
    return out


def _best_of_two(fn: Any, texts: list[str], batch: int) -> float:
    best = float("inf")
    for _ in range(2):
        started = time.perf_counter()
        for start in range(0, len(texts), batch):
            fn(texts[start:start + batch])
        best = min(best, time.perf_counter() - started)
    return len(texts) / best


def measure(model: str, docs: list[str], questions: list[str]) -> tuple[float, float]:
    from chalicelib.providers.embeddings import offline_embeddings

    embedder = offline_embeddings(model)
    embedder.embed(docs[:1])
    embedder.embed_queries(questions[:1])
    return _best_of_two(embedder.embed, docs, 64), _best_of_two(embedder.embed_queries, questions, 1)


def main(argv: list[str] | None = None) -> int:
    from benchmarks.bench_retrieval import _installed
    from chalicelib.providers.embeddings import DEFAULT_OFFLINE_MODEL, OFFLINE_MODELS

    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_embedding")
    parser.add_argument("--documents", type=int, default=200)
    args = parser.parse_args(argv)
    docs = documents(args.documents)
    questions = [q.question for name in DATABASES for q in load_questions(name)]
    baseline_model = "all-MiniLM-L6-v2"
    rates = {model: measure(model, docs, questions) for model in OFFLINE_MODELS if _installed(model)}
    value, baseline = rates[DEFAULT_OFFLINE_MODEL][0], rates[baseline_model][0]
    extra = [f"  embedding: {model:<24} documents {doc:.1f}/s (batches of 64, {len(docs)} DDL-like texts), "
             f"questions {ask:.1f}/s (one at a time, {len(questions)})" for model, (doc, ask) in rates.items()]
    extra.append(f"  embedding: BENCH value = {DEFAULT_OFFLINE_MODEL} (default) documents/s, baseline = "
                 f"{baseline_model} (numpy) documents/s, same texts and process")
    report("embedding", value, "docs/s", baseline, value / baseline, *extra)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
