"""The DDL and the data dictionary shaped for retrieval: the header leads with the business name, the description,
the declared foreign keys, the inferred relationships (header comments with their evidence, never constraints) and
the columns by their business names with the enum values; the statement stays executable as written."""
from __future__ import annotations

import psycopg2

from chalicelib.pipeline import ddl, training
from chalicelib.pipeline.models import ColumnMeta, ForeignKey, TableDoc, TableMeta, TableRef


def _col(name: str, data_type: str, udt: str, comment: str | None = None, *, pk: bool = False, n: int = 1):
    return ColumnMeta(name=name, data_type=data_type, udt_name=udt, type_kind="base", max_length=None,
                      nullable=not pk, default=None, comment=comment, is_primary_key=pk, ordinal=n)


def _doc() -> TableDoc:
    ref = TableRef("public", "bss_branch")
    columns = [_col("id", "character varying(32)", "varchar", "主键ID", pk=True, n=1),
               _col("branch_name", "character varying(255)", "varchar", "档口名称", n=2),
               _col("service_no", "character varying(255)", "varchar", "服务区编码", n=3),
               _col("company_id", "character varying(32)", "varchar", "公司ID", n=4),
               _col("classify", "character varying(50)", "varchar", "品类（经营类别）", n=5),
               _col("delete_ts", "timestamp(3) without time zone", "timestamp", None, n=6)]
    declared = ForeignKey(name="fk_company", columns=["company_id"], ref_schema="public", ref_table="bss_company",
                          ref_columns=["id"])
    inferred = ForeignKey(name="inferred_service_no", columns=["service_no"], ref_schema="public",
                          ref_table="bss_service_area", ref_columns=["service_area_no"], inferred=True,
                          evidence="同名编码列，98% 的值在 bss_service_area.service_area_no 中")
    meta = TableMeta(ref=ref, comment="档口", kind="table", columns=columns, primary_key=["id"],
                     foreign_keys=[declared], inferred_keys=[inferred], row_count=60, row_count_exact=True)
    values = ["便利店", "小吃", "整体租赁", "特产", "餐饮", "中式快餐"]
    return TableDoc(meta=meta, table_comment="档口", column_comments={c.name: c.comment for c in columns if c.comment},
                    comment_sources={}, enums={"classify": values}, samples=[])


def test_ddl_header_leads_with_what_a_retriever_needs(scratch_db):
    text = ddl.render_ddl(_doc(), "高速公路服务区管理系统")
    lines = text.splitlines()
    assert lines[0] == "-- 中文名: 档口"
    assert lines[1].startswith("-- 描述: 档口（高速公路服务区管理系统）")
    assert lines[2] == "-- 外键: company_id 关联 public.bss_company(id)"
    assert lines[3] == ("-- 推断关联: service_no 关联 public.bss_service_area(service_area_no)"
                        "（依据：同名编码列，98% 的值在 bss_service_area.service_area_no 中）")
    # Business names of the commented columns (short names), an enum column with its first values.
    assert lines[4] == "-- 字段: 主键ID、档口名称、服务区编码、公司ID、品类（便利店、小吃、整体租赁、特产、餐饮）"
    assert lines[5] == "create table public.bss_branch ("
    body = "\n".join(lines[5:])
    assert "references" not in body.lower() and "foreign key" not in body.lower()  # never a constraint
    assert "可选值：便利店、小吃、整体租赁、特产、餐饮、中式快餐" in body  # the column note keeps every value
    conn = psycopg2.connect(scratch_db)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(text)  # executable as written
            cur.execute("select count(*) from information_schema.columns where table_name = 'bss_branch'")
            assert cur.fetchone()[0] == 6
            cur.execute("select count(*) from pg_constraint where conrelid = 'public.bss_branch'::regclass "
                        "and contype = 'f'")
            assert cur.fetchone()[0] == 0
    finally:
        conn.close()


def test_detail_md_lists_inferred_relationships_inside_the_tables_section():
    md = ddl.render_md(_doc(), "高速公路服务区管理系统")
    assert ("推断关联（数据库未声明，不是约束）：\n"
            "- service_no 关联 public.bss_service_area(service_area_no)（依据：") in md
    sections = training.split_markdown_sections(md)
    assert len(sections) == 1 and sections[0].startswith("## bss_branch（档口）")  # one self-contained row

    english = ddl.render_md(_doc(), "Highway service areas")
    assert "Inferred relationships (not declared in the database, not constraints):\n- service_no references " \
           "public.bss_service_area(service_area_no) (evidence: " in english
