"""Table-list parsing: names remember how they were written, comments, separators, duplicates, clear errors."""
from __future__ import annotations

import pytest

from chalicelib.errors import InvalidTableName, ValidationError
from chalicelib.pipeline.models import TableRef
from chalicelib.pipeline.names import TableName, fold_identifier
from chalicelib.pipeline.tablelist import MAX_TABLES, parse_table_list, parse_table_names, render_table_list


def literal(schema: str, name: str) -> TableName:
    return TableName(schema, name)


def test_lines_commas_comments_and_blank_lines():
    text = """\ufeff# tables for the demo
-- another comment style

bss_company
public.bss_service_area, ods.orders ,  bss_branch   # trailing comment
  Public.BSS_Company
bss_car_day_count -- trailing dash comment
"""
    assert parse_table_list(text) == [
        literal("public", "bss_company"),
        literal("public", "bss_service_area"),
        literal("ods", "orders"),
        literal("public", "bss_branch"),
        # Unquoted upper case is kept as written; resolution tries it exactly, then folded (bss_company).
        TableName("Public", "BSS_Company", fold_schema=True, fold_name=True),
        literal("public", "bss_car_day_count"),
    ]


def test_quoted_identifiers_keep_case_and_special_characters():
    refs = parse_table_list('"Sales"."OrderItems"\n"Sales".customers, "my table", "a""b"."x,y"\nsales.orderitems\n')
    assert refs == [
        literal("Sales", "OrderItems"),
        literal("Sales", "customers"),
        literal("public", "my table"),
        literal('a"b', "x,y"),
        literal("sales", "orderitems"),
    ]


def test_quoted_hash_and_dashes_are_not_comments():
    assert parse_table_list('"a#b"."c--d"') == [literal("a#b", "c--d")]


def test_unquoted_names_remember_they_may_fold_and_allow_dollar():
    assert parse_table_list("Foo.Bar$1\n_x") == [TableName("Foo", "Bar$1", True, True), literal("public", "_x")]
    # Folding is PostgreSQL's: ASCII letters only.
    assert fold_identifier("SalesÉtat") == "salesÉtat"


def test_names_postgresql_accepts_only_quoted_are_literal():
    # A leading digit: accepted, but only an exact catalog match will do (no folding), rendered quoted.
    assert parse_table_list("public.2019, 2019A") == [literal("public", "2019"), literal("public", "2019A")]
    assert render_table_list(parse_table_list("public.2019, 2019A")) == 'public."2019"\npublic."2019A"\n'
    assert parse_table_list('"表名"') == [literal("public", "表名")]
    # PostgreSQL reads non-ASCII characters as identifier characters: unquoted, the same (unfoldable) name.
    assert parse_table_list("ods.服务区日报") == parse_table_list('ods."服务区日报"') == [literal("ods", "服务区日报")]


def test_quoted_and_unquoted_spellings_differ_until_resolution():
    unquoted, quoted, lower = parse_table_list('SalesOrder\n"SalesOrder"\nsalesorder')
    assert unquoted.name_candidates() == ["SalesOrder", "salesorder"]
    assert quoted.name_candidates() == ["SalesOrder", None] and lower.name_candidates() == ["salesorder", None]
    # A quoted name PostgreSQL would not need to quote is the same name as its unquoted spelling.
    assert parse_table_list('"public"."bss_company"') == parse_table_list("bss_company")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("ok_table\nbad-name", "'bad-name' on line 2"),
        ("a.b.c", "'a.b.c' on line 1"),
        ('"unterminated', "unterminated"),
        ('""', "empty"),
        ("schema.", "empty"),
        ("tab le", "'tab le'"),
        ("x" * 64, "longer than 63 bytes"),
        ('"' + "é" * 32 + '"', "longer than 63 bytes"),
        ("a; drop table x", "'a; drop table x'"),
    ],
)
def test_invalid_names_are_rejected_with_entry_and_line(text, fragment):
    with pytest.raises(InvalidTableName) as info:
        parse_table_list(text)
    assert fragment in info.value.message
    assert info.value.status == 400
    assert info.value.invalid_params == ["table_list_file"]


def test_max_length_is_counted_in_bytes():
    assert parse_table_list("x" * 63) == [literal("public", "x" * 63)]
    assert parse_table_list('"' + "é" * 31 + '"') == [literal("public", "é" * 31)]


def test_empty_text_gives_empty_list():
    assert parse_table_list("\n# nothing\n  \n") == []


def test_too_many_tables():
    text = "\n".join(f"t{i}" for i in range(MAX_TABLES + 1))
    with pytest.raises(ValidationError, match=f"names {MAX_TABLES + 1:,} tables; at most {MAX_TABLES:,} are allowed"):
        parse_table_list(text)
    assert len(parse_table_list("\n".join(f"t{i % MAX_TABLES}" for i in range(MAX_TABLES + 50)))) == MAX_TABLES


def test_table_names_list():
    assert parse_table_names(["bss_company", " ods.Orders ", '"Sales"."OrderItems"', "", "bss_company"]) == [
        literal("public", "bss_company"),
        TableName("ods", "Orders", fold_name=True),
        literal("Sales", "OrderItems"),
    ]
    with pytest.raises(InvalidTableName, match=r"'x\.y\.z' \(item 2\)"):
        parse_table_names(["ok", "x.y.z"])
    with pytest.raises(InvalidTableName, match="must be a string"):
        parse_table_names(["ok", 3])  # type: ignore[list-item]


def test_render_round_trips_written_and_catalog_names():
    written = parse_table_list('bss_company\nSales.OrderItems\n"Sales"."OrderItems"\npublic."user"\n"a""b"."x,y"\n'
                               'public.2019\n"Group"."Year"')
    text = render_table_list(written)
    assert text.splitlines() == ["public.bss_company", "Sales.OrderItems", '"Sales"."OrderItems"', 'public."user"',
                                 '"a""b"."x,y"', 'public."2019"', '"Group"."Year"']
    assert parse_table_list(text) == written
    # Catalog names render quoted where PostgreSQL needs it and read back literally.
    refs = [TableRef("public", "bss_company"), TableRef("Sales", "OrderItems"), TableRef("public", "user"),
            TableRef('a"b', "x,y"), TableRef("public", "2019"), TableRef("public", "Natural")]
    assert [TableName.exact(r) for r in refs] == parse_table_list(render_table_list(refs))
    assert render_table_list(refs).splitlines()[:3] == ["public.bss_company", '"Sales"."OrderItems"', 'public."user"']


def test_names_round_trip_through_their_dict_form():
    for name in parse_table_list('SalesOrder, "SalesOrder", Ods.Orders, public.2019'):
        assert TableName.from_dict(name.to_dict()) == name


def test_ten_thousand_tables_are_accepted_and_fit_the_upload_limit():
    """The cap is at least 10,000 (issue #9): such a list of realistic names fits the 1 MB upload limit."""
    from chalicelib.config import get_settings

    assert MAX_TABLES >= 10_000
    text = "\n".join(f"ods.fact_warehouse_table_{i:05d}" for i in range(10_000))
    assert len(text.encode("utf-8")) < get_settings().max_upload_bytes
    refs = parse_table_list(text)
    assert len(refs) == 10_000 and refs[-1] == literal("ods", "fact_warehouse_table_09999")
