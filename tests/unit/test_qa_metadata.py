"""qa: metadata.txt must run in PostgreSQL as written; metadata_detail.md lists every theme."""
from __future__ import annotations

import psycopg2

from chalicelib.pipeline import qa
from chalicelib.pipeline.models import TableDoc, TableMeta, TableRef, Theme

THEMES = [
    Theme("服务区营收分析", "分析各服务区的营收，含 'quotes' 与 \\ 反斜杠", ["public.bss_business_day_data",
                                                                     "public.bss_service_area"],
          ["服务区", "档口"], ["支付总额", "订单数"]),
    Theme("O'Brien's theme; DROP TABLE metadata; --", "", ["public.x"], [], []),
    Theme("很长" * 80, "d\nsecond line", ['"Odd"."Name"'], ["a'b"], ["c\x00d"]),
]


def test_metadata_txt_executes(scratch_db):
    text = qa.render_metadata_txt(THEMES, "highway_db")
    assert "CREATE TABLE metadata" in text
    assert text.count("INSERT INTO metadata") == 3
    conn = psycopg2.connect(scratch_db)
    try:
        with conn.cursor() as cur:
            cur.execute(text)
            cur.execute("select topic_name, description, related_tables, biz_entities, biz_metrics, created_at "
                        "from metadata order by id")
            rows = cur.fetchall()
    finally:
        conn.close()
    assert len(rows) == 3
    assert rows[0][:5] == ("服务区营收分析", "分析各服务区的营收，含 'quotes' 与 \\ 反斜杠",
                           ["public.bss_business_day_data", "public.bss_service_area"], ["服务区", "档口"],
                           ["支付总额", "订单数"])
    assert rows[0][5] is not None
    assert rows[1][0] == "O'Brien's theme; DROP TABLE metadata; --"
    assert rows[1][2:5] == (["public.x"], [], [])
    assert len(rows[2][0]) == 100 and rows[2][1] == "d second line"
    assert rows[2][2] == ['"Odd"."Name"'] and rows[2][3] == ["a'b"] and rows[2][4] == ["cd"]


def test_metadata_txt_without_themes_still_creates_table(scratch_db):
    conn = psycopg2.connect(scratch_db)
    try:
        with conn.cursor() as cur:
            cur.execute(qa.render_metadata_txt([], "db"))
            cur.execute("select count(*) from metadata")
            assert cur.fetchone()[0] == 0
    finally:
        conn.close()


def _doc(name: str, comment: str | None) -> TableDoc:
    meta = TableMeta(ref=TableRef("public", name), comment=comment, kind="table", columns=[], primary_key=[],
                     foreign_keys=[], row_count=0, row_count_exact=True)
    return TableDoc(meta=meta, table_comment=comment, column_comments={}, comment_sources={}, enums={}, samples=[])


def test_metadata_detail_md():
    docs = [_doc("bss_business_day_data", "营业日数据"), _doc("bss_service_area", None)]
    md = qa.render_metadata_detail_md(THEMES[:1], docs)
    assert md.startswith("## metadata（存储分析主题元数据）")
    assert "- topic_name (varchar(100)) - 业务主题名称 [非空]" in md
    assert "### 1. 服务区营收分析" in md
    assert "  - `public.bss_business_day_data`（营业日数据）" in md
    assert "  - `public.bss_service_area`\n" in md
    assert "- 业务指标: 支付总额, 订单数" in md
    en = qa.render_metadata_detail_md([Theme("Revenue", "Totals", ["public.bss_service_area"], ["area"], ["sum"])],
                                      [_doc("bss_service_area", "Service areas")])
    assert en.startswith("## metadata (business themes)")
    assert "  - `public.bss_service_area` (Service areas)" in en
