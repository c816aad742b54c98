"""The bundled demo highway database: deterministic, idempotent, realistic enough to document."""
from __future__ import annotations

import time

from chalicelib.pipeline.db import connect
from chalicelib.pipeline.introspect import introspect_tables, list_tables
from chalicelib.pipeline.tablelist import parse_table_names
from infra.local.demo_db import DEMO_BUSINESS_CONTEXT, DEMO_TABLES, load_demo_database


def _checksum(url: str) -> dict[str, str]:
    conn = connect(url)
    try:
        with conn.cursor() as cur:
            out = {}
            for table in DEMO_TABLES:
                cur.execute(f"select md5(string_agg(t::text, '|' order by t::text)) from {table} t")  # noqa: S608
                out[table] = cur.fetchone()[0]
            return out
    finally:
        conn.close()


def test_demo_tables_comments_and_sizes(demo_db_url):
    assert DEMO_BUSINESS_CONTEXT == "高速公路服务区管理系统"
    conn = connect(demo_db_url)
    try:
        assert list_tables(conn, ["public"], "bss_*") == sorted(DEMO_TABLES)
        found, errors = introspect_tables(conn, parse_table_names(DEMO_TABLES), exact_count_threshold=100_000)
    finally:
        conn.close()
    assert not errors and len(found) == len(DEMO_TABLES)
    by_name = {ref.name: meta for ref, meta in found.items()}

    day = by_name["bss_business_day_data"]
    expected = ["id", "version", "create_ts", "created_by", "update_ts", "updated_by", "delete_ts", "deleted_by",
                "oper_date", "service_no", "service_name", "branch_no", "branch_name", "wx", "wx_order", "zfb",
                "zfb_order", "rmb", "rmb_order", "xs", "xs_order", "jd", "jd_order", "order_sum", "pay_sum",
                "source_type"]
    assert [c.name for c in day.columns] == expected
    assert day.column("id").data_type == "character varying(32)"
    assert day.column("wx").data_type == "numeric(19,4)"
    assert day.column("wx").comment == "微信支付金额" and day.column("jd").comment is None
    assert {(f.columns[0], f.ref_table) for f in day.foreign_keys} == {("service_no", "bss_service_area"),
                                                                      ("branch_no", "bss_branch")}
    assert 3000 < day.row_count < 10_000 and day.row_count_exact
    assert by_name["bss_car_day_count"].row_count == 90 * 15 * 4

    # Comments are partly missing on purpose.
    assert by_name["bss_branch"].comment is None and by_name["bss_service_area_mapper"].comment is None
    assert by_name["bss_service_area"].comment == "高速公路服务区基础信息"
    assert by_name["bss_service_area"].column("service_position").comment is None
    total = sum(m.row_count for m in found.values())
    assert 5_000 < total < 20_000


def test_demo_enum_like_values_and_soft_delete(demo_db_url):
    conn = connect(demo_db_url)
    try:
        with conn.cursor() as cur:
            cur.execute("select array_agg(distinct service_state order by service_state), "
                        "array_agg(distinct service_area_type order by service_area_type) from bss_service_area")
            states, types = cur.fetchone()
            cur.execute("select array_agg(distinct car_type order by car_type) from bss_car_day_count")
            car_types = cur.fetchone()[0]
            cur.execute("select count(*) filter (where delete_ts is not null), count(*) from bss_business_day_data")
            deleted, total = cur.fetchone()
            cur.execute("select count(*) from bss_business_day_data where pay_sum <> wx + zfb + rmb + xs + jd "
                        "or order_sum <> wx_order + zfb_order + rmb_order + xs_order + jd_order")
            inconsistent = cur.fetchone()[0]
    finally:
        conn.close()
    assert set(states) == {"开放", "关闭", "上传数据"}
    assert set(types) == {"信息化服务区", "智能化服务区"}
    assert set(car_types) == {"过境", "危化品", "城际", "其他"}
    assert 0 < deleted < total * 0.05
    assert inconsistent == 0


def test_demo_load_is_deterministic_idempotent_and_fast(scratch_db):
    started = time.monotonic()
    counts = load_demo_database(scratch_db)
    assert time.monotonic() - started < 3
    first = _checksum(scratch_db)
    assert load_demo_database(scratch_db) == counts  # drops and recreates its own tables
    assert _checksum(scratch_db) == first
