"""`prompt_tokens`: the tokens the LLM prompts take per call kind (comments, themes, pairs, repair) on a generated
schema of 10, 100 and 1,000 tables, today's prompt builders (chalicelib.providers.prompts) beside the pre-#14 ones
(benchmarks/prompts_before.py, a frozen copy) on the same docs in the same run, counted with the project's token
estimate (chalicelib.pipeline.prompt_budget.estimate_messages: the system prompt, the user prompt, their overhead).

The generated tables look like a business warehouse: 8 to 26 columns (codes, names, dates, amounts, counts, a
status, audit columns with a soft delete), Chinese comments on about half the columns and most tables, foreign-key
chains, 20 sample rows each, and the value profile ddl_generation now writes (a few values per text column, the
ranges of dates and numbers). Per size: every table's comment call, the theme calls for the whole schema, one pairs
call for each of 5 themes of 6 linked tables, one repair call for 10 failing statements.

The BENCH value is the total prompt tokens of those calls at 1,000 tables with today's builders, the baseline the
same with the frozen ones (ratio = baseline / value: above 1, today's prompts are smaller). Today's pair and theme
prompts carry more per table (values, ranges, relationships, examples), so they may be larger: the detail lines say.
"""
# ruff: noqa: S608 - the SQL here is fixture text over generated identifiers
from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
from collections.abc import Callable

from benchmarks import prompts_before
from benchmarks.common import report
from chalicelib.pipeline.models import ColumnMeta, ForeignKey, RepairRequest, TableDoc, TableMeta, TableRef, Theme
from chalicelib.pipeline.prompt_budget import PromptBudget, estimate_messages
from chalicelib.providers import prompts

CONTEXT = "高速公路服务区经营管理：各服务区、档口每日营收、车流量与支付方式分析"
SIZES = (10, 100, 1000)
KINDS = ("comments", "themes", "pairs", "repair")
BUDGET = PromptBudget()
THEMES, THEME_TABLES, REPAIRS = 5, 6, 10

_KINDS = [  # name stem, type, udt, Chinese comment, value maker
    ("code", "character varying(32)", "varchar", "编码", lambda r, i: f"S{r.randint(1000, 9999)}"),
    ("name", "character varying(255)", "varchar", "名称",
     lambda r, i: f"{r.choice('庐九南樟新吉赣瑞婺上')}{i % 40}号服务区"),
    ("type", "character varying(50)", "varchar", "类型", lambda r, i: r.choice(["信息化", "智能化", "普通"])),
    ("oper_date", "date", "date", "营业日期",
     lambda r, i: (dt.date(2022, 1, 1) + dt.timedelta(days=i % 500)).isoformat()),
    ("pay_amount", "numeric(19,4)", "numeric", "支付金额", lambda r, i: f"{r.uniform(100, 20000):.4f}"),
    ("order_count", "integer", "int4", "订单数", lambda r, i: str(r.randint(1, 600))),
    ("remark", "text", "text", "备注", lambda r, i: "人工补录：" + "当日数据延迟上报，已核对" * r.randint(1, 3)),
]
_AUDIT = [("create_ts", "timestamp(3) without time zone", "timestamp", "创建时间"),
          ("created_by", "character varying(50)", "varchar", "创建人"),
          ("delete_ts", "timestamp(3) without time zone", "timestamp", "删除时间（软删除）")]


def _column(name: str, data_type: str, udt: str, comment: str | None, ordinal: int, **kw) -> ColumnMeta:
    return ColumnMeta(name=name, data_type=data_type, udt_name=udt, type_kind="base", max_length=None,
                      nullable=True, default=None, comment=comment, ordinal=ordinal, **kw)


def generated_docs(count: int, seed: int = 14) -> list[TableDoc]:
    rng = random.Random(seed)
    docs: list[TableDoc] = []
    for i in range(count):
        ref = TableRef(f"dw{i % 10}", f"t{i:04d}_service_fact")
        columns = [_column("id", "character varying(32)", "varchar", "主键" if i % 2 else None, 1, is_primary_key=True)]
        makers: dict[str, Callable] = {"id": lambda r, n: f"{r.getrandbits(128):032x}"}
        for n in range(rng.randint(5, 20)):
            stem, data_type, udt, comment, maker = _KINDS[n % len(_KINDS)]
            name = f"{stem}_{n}"
            columns.append(_column(name, data_type, udt, f"{comment}{n}" if rng.random() < 0.5 else None,
                                   len(columns) + 1))
            makers[name] = maker
        if i:
            columns.append(_column("parent_id", "character varying(32)", "varchar", None, len(columns) + 1))
            makers["parent_id"] = makers["id"]
        for name, data_type, udt, comment in _AUDIT:
            columns.append(_column(name, data_type, udt, comment, len(columns) + 1))
            makers[name] = (lambda r, n: "admin") if udt == "varchar" else (lambda r, n: "2023-01-02 03:04:05.000")
        fks = [ForeignKey(f"fk_{i}", ["parent_id"], docs[i - 1].meta.ref.schema, docs[i - 1].meta.ref.name, ["id"])] \
            if i and i % 10 else []
        meta = TableMeta(ref=ref, comment=f"服务区业务事实表{i}" if i % 4 else None, kind="table", columns=columns,
                         primary_key=["id"], foreign_keys=fks, row_count=5000, row_count_exact=True)
        samples = [{c.name: makers[c.name](rng, i * 20 + k) for c in columns} for k in range(20)]
        values, ranges = {}, {}
        for col in columns[1:]:
            seen = sorted({row[col.name] for row in samples})
            if col.udt_name in ("date", "timestamp", "numeric", "int4"):
                key = (lambda v: float(v)) if col.udt_name in ("numeric", "int4") else (lambda v: v)
                ranges[col.name] = [min(seen, key=key), max(seen, key=key)]
            elif col.name != "parent_id":
                values[col.name] = [v[:80] for v in seen[:5]]
        docs.append(TableDoc(meta=meta, table_comment=meta.comment or f"事实表{i}",
                             column_comments={c.name: c.comment for c in columns if c.comment},
                             comment_sources={}, enums={c.name: ["信息化", "智能化", "普通"] for c in columns
                                                        if c.name.startswith("type_")},
                             samples=samples, column_values=values, value_ranges=ranges))
    return docs


def _size(prompt: str) -> int:
    return estimate_messages([{"role": "system", "content": prompts.SYSTEM_PROMPTS["zh"]},
                              {"role": "user", "content": prompt}])


def measure(module, docs: list[TableDoc]) -> dict[str, list[int]]:
    """Prompt tokens of every call of each kind, with the builders of `module`."""
    sizes: dict[str, list[int]] = {kind: [] for kind in KINDS}
    for doc in docs:
        fully = bool(doc.meta.comment) and all(c.comment for c in doc.meta.columns)
        if module is prompts and fully:
            continue  # ddl_generation no longer asks a model about a table the database comments fully
        sizes["comments"] += [_size(p) for p in module.comments_prompts(doc.meta, doc.samples, CONTEXT, "zh", BUDGET)]
    sizes["themes"] = [_size(p) for p in module.theme_prompts(docs, CONTEXT, THEMES, "zh", BUDGET)]
    step = max(1, len(docs) // THEMES)
    for start in range(0, min(len(docs), THEMES * step), step):
        chosen = docs[start:start + THEME_TABLES]
        theme = Theme(f"主题{start}", "服务区营收与订单分析", [d.meta.ref.display_name for d in chosen],
                      ["服务区", "档口"], ["营收", "订单数"])
        sizes["pairs"].append(_size(module.pairs_prompt(theme, chosen, CONTEXT, 10, "zh", BUDGET)))
    requests = [RepairRequest(n, f"问题{n}", f"SELECT count(*) FROM {docs[n % len(docs)].meta.ref.sql_name} a JOIN "
                                             f"{docs[(n + 1) % len(docs)].meta.ref.sql_name} b ON a.id = b.parent_id "
                                             "WHERE a.nope > 0;", 'column a.nope does not exist')
                for n in range(REPAIRS)]
    batches, _skipped = module.repair_prompts(requests, docs, "zh", BUDGET)
    sizes["repair"] = [_size(p) for _, p in batches]
    return sizes


def _mean(values: list[int]) -> float:
    return statistics.fmean(values) if values else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    lines: list[str] = []
    totals: dict[int, tuple[int, int]] = {}
    for count in sizes:
        docs = generated_docs(count)
        after, before = measure(prompts, docs), measure(prompts_before, docs)
        parts = []
        for kind in KINDS:
            parts.append(f"{kind} {_mean(after[kind]):,.0f}/call x{len(after[kind])} "
                         f"(before {_mean(before[kind]):,.0f}/call x{len(before[kind])})")
        totals[count] = (sum(map(sum, after.values())), sum(map(sum, before.values())))
        lines.append(f"  prompt_tokens: {count} tables: " + "; ".join(parts)
                     + f"; all calls {totals[count][0]:,} tokens (before {totals[count][1]:,})")
    largest = max(sizes)
    value, baseline = totals[largest]
    lines.append(f"  prompt_tokens: estimated tokens (chalicelib.pipeline.prompt_budget), context {CONTEXT!r}, "
                 f"budget {BUDGET.prompt_tokens}; baseline = benchmarks/prompts_before.py (pre-#14 builders, frozen)")
    report("prompt_tokens", value, f"tokens@{largest}", baseline, baseline / value if value else 0.0, *lines)


if __name__ == "__main__":
    main()
