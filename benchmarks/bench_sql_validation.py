"""sql_validation: 1,000 generated statements (10% invalid) over the demo highway database.

- project:  `chalicelib.pipeline.validation.validate_pairs` (lexical read-only check, then EXPLAIN with each
            statement isolated in its own read-only transaction with a statement timeout, over a small pool
            of connections: DATA_PIPELINE_VALIDATION_CONCURRENCY, default 4)
- baseline: a sequential EXPLAIN loop on one autocommit connection (no read-only check, no timeout)

ratio = project statements/s over the loop's (target: >= 1.0; it was >= 0.8). Both must agree on which statements
are valid. Each side runs five times, alternating, and keeps its best time
(the machine is shared). Statements are all distinct, so the project's per-text cache does not help it.

    python -m benchmarks.bench_sql_validation [--statements N]
"""
from __future__ import annotations

import argparse
import time

import psycopg2

from benchmarks.common import report
from benchmarks.pgtemp import bench_database
from chalicelib.config import get_settings
from chalicelib.pipeline.models import QAPair
from chalicelib.pipeline.validation import validate_pairs
from infra.local.demo_db import load_demo_database

_VALID = (
    "select count(*) from bss_service_area where delete_ts is null and service_state = '开放' and id <> '{i}';",
    "select service_area_type, count(*) from bss_service_area where id > '{i}' group by service_area_type "
    "order by 2 desc;",
    "select oper_date, sum(pay_sum) as total from bss_business_day_data where oper_date >= date '2023-04-01' "
    "+ {i} % 28 group by oper_date order by oper_date;",
    "select s.service_area_name, sum(d.pay_sum) as revenue from bss_business_day_data d join bss_service_area s "
    "on s.service_area_no = d.service_no where d.delete_ts is null group by s.service_area_name "
    "order by revenue desc limit {i};",
    "select c.company_name, count(s.id) from bss_company c left join bss_service_area s on s.company_id = c.id "
    "and s.delete_ts is null where c.company_no <> '{i}' group by c.company_name;",
    "select car_type, avg(customer_count) from bss_car_day_count where count_date between date '2023-04-01' "
    "and date '2023-04-01' + {i} group by car_type;",
    "with daily as (select service_no, oper_date, sum(wx + zfb + rmb + xs + jd) as amount from "
    "bss_business_day_data group by service_no, oper_date) select service_no, max(amount) from daily "
    "where amount > {i} group by service_no;",
    "select b.branch_name, b.classify, sum(d.order_sum) from bss_branch b join bss_business_day_data d "
    "on d.branch_no = b.branch_no where d.oper_date > current_date - {i} group by b.branch_name, b.classify;",
    "select r.route_name, count(distinct l.service_area_id) from bss_section_route r join "
    "bss_section_route_area_link l on l.section_route_id = r.id group by r.route_name having count(*) > {i};",
    "select m.source_system_type, count(*) from bss_service_area_mapper m join bss_service_area s "
    "on s.id = m.service_area_id where m.source_type = {i} group by m.source_system_type;",
)
_INVALID = (
    "select service_area_nme from bss_service_area where id = '{i}';",
    "select count(*) from bss_service_areas where id = '{i}';",
    "select sum(pay_sum) from bss_business_day_data where oper_date = {i} and oper_date > 'x';",
    "select count(*) from bss_company where group by company_name {i};",
    "select c.company_name, s.nothing from bss_company c join bss_service_area s on s.company_id = c.id "
    "where c.id = '{i}';",
)


def make_statements(count: int) -> tuple[list[QAPair], list[bool]]:
    pairs, valid = [], []
    for i in range(count):
        bad = i % 10 == 7
        template = _INVALID[(i // 10) % len(_INVALID)] if bad else _VALID[i % len(_VALID)]
        pairs.append(QAPair(question=f"问题 {i}", sql=template.format(i=i + 1)))
        valid.append(not bad)
    return pairs, valid


def sequential_explain_loop(url: str, pairs: list[QAPair]) -> list[bool]:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    results = []
    try:
        with conn.cursor() as cur:
            for pair in pairs:
                try:
                    cur.execute("EXPLAIN " + pair.sql)
                    cur.fetchall()
                    results.append(True)
                except psycopg2.Error:
                    results.append(False)
    finally:
        conn.close()
    return results


def project(url: str, pairs: list[QAPair], concurrency: int) -> list[bool]:
    report_ = validate_pairs(url, pairs, llm=None, docs=[], enable_repair=False, max_rounds=0,
                             timeout_ms=get_settings().statement_timeout_ms, concurrency=concurrency)
    return [r.valid_before for r in report_.results]


def timed(fn, *args) -> tuple[float, list[bool]]:
    started = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - started, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_sql_validation")
    parser.add_argument("--statements", type=int, default=1000)
    args = parser.parse_args(argv)
    concurrency = get_settings().validation_concurrency
    pairs, expected = make_statements(args.statements)
    with bench_database("bench_sql_validation") as url:
        load_demo_database(url)
        sequential_explain_loop(url, pairs[:50])  # warm the server's caches for both sides
        baseline_s = project_s = single_s = float("inf")
        for _ in range(5):
            seconds, got = timed(sequential_explain_loop, url, pairs)
            assert got == expected, "the EXPLAIN loop disagrees with the generated validity"
            baseline_s = min(baseline_s, seconds)
            seconds, got = timed(project, url, pairs, concurrency)
            assert got == expected, "validate_pairs disagrees with the generated validity"
            project_s = min(project_s, seconds)
        single_s, got = timed(project, url, pairs, 1)
        assert got == expected

    n = len(pairs)
    report(
        "sql_validation", n / project_s, "statements/s", n / baseline_s, baseline_s / project_s,
        f"  sql_validation: {n} statements ({n - sum(expected)} invalid): project {project_s:.2f} s with "
        f"{concurrency} connections, {single_s:.2f} s with 1 connection (each statement isolated, read-only "
        f"checked); sequential EXPLAIN loop {baseline_s:.2f} s",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
