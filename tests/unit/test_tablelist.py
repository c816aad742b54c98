"""Table-list parsing: PostgreSQL identifier rules, comments, separators, duplicates, clear errors."""
from __future__ import annotations

import pytest

from chalicelib.errors import InvalidTableName, ValidationError
from chalicelib.pipeline.models import TableRef
from chalicelib.pipeline.tablelist import MAX_TABLES, parse_table_list, parse_table_names, render_table_list


def test_lines_commas_comments_and_blank_lines():
    text = """\ufeff# tables for the demo
-- another comment style

bss_company
public.bss_service_area, ods.orders ,  bss_branch   # trailing comment
  Public.BSS_Company
bss_car_day_count -- trailing dash comment
"""
    assert parse_table_list(text) == [
        TableRef("public", "bss_company"),
        TableRef("public", "bss_service_area"),
        TableRef("ods", "orders"),
        TableRef("public", "bss_branch"),
        TableRef("public", "bss_car_day_count"),
    ]


def test_quoted_identifiers_keep_case_and_special_characters():
    refs = parse_table_list('"Sales"."OrderItems"\n"Sales".customers, "my table", "a""b"."x,y"\nsales.orderitems\n')
    assert refs == [
        TableRef("Sales", "OrderItems"),
        TableRef("Sales", "customers"),
        TableRef("public", "my table"),
        TableRef('a"b', "x,y"),
        TableRef("sales", "orderitems"),
    ]


def test_quoted_hash_and_dashes_are_not_comments():
    assert parse_table_list('"a#b"."c--d"') == [TableRef("a#b", "c--d")]


def test_unquoted_names_fold_to_lower_case_and_allow_dollar():
    assert parse_table_list("Foo.Bar$1\n_x") == [TableRef("foo", "bar$1"), TableRef("public", "_x")]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("ok_table\n1abc", "'1abc' on line 2"),
        ("a.b.c", "'a.b.c' on line 1"),
        ("bad-name", "'bad-name' on line 1"),
        ('"unterminated', "unterminated"),
        ('""', "empty"),
        ("schema.", "empty"),
        ("tab le", "'tab le'"),
        ("x" * 64, "longer than 63 bytes"),
        ('"' + "é" * 32 + '"', "longer than 63 bytes"),
        ("表名", "'表名'"),
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
    assert parse_table_list("x" * 63) == [TableRef("public", "x" * 63)]
    assert parse_table_list('"' + "é" * 31 + '"') == [TableRef("public", "é" * 31)]


def test_empty_text_gives_empty_list():
    assert parse_table_list("\n# nothing\n  \n") == []


def test_too_many_tables():
    text = "\n".join(f"t{i}" for i in range(MAX_TABLES + 1))
    with pytest.raises(ValidationError, match="at most 1000"):
        parse_table_list(text)
    assert len(parse_table_list("\n".join(f"t{i % MAX_TABLES}" for i in range(MAX_TABLES + 50)))) == MAX_TABLES


def test_table_names_list():
    assert parse_table_names(["bss_company", " ods.Orders ", '"Sales"."OrderItems"', "", "bss_company"]) == [
        TableRef("public", "bss_company"),
        TableRef("ods", "orders"),
        TableRef("Sales", "OrderItems"),
    ]
    with pytest.raises(InvalidTableName, match=r"'x\.y\.z' \(item 2\)"):
        parse_table_names(["ok", "x.y.z"])
    with pytest.raises(InvalidTableName, match="must be a string"):
        parse_table_names(["ok", 3])  # type: ignore[list-item]


def test_render_round_trips():
    refs = [TableRef("public", "bss_company"), TableRef("Sales", "OrderItems"), TableRef("public", "user"),
            TableRef('a"b', "x,y")]
    text = render_table_list(refs)
    assert text.splitlines()[:3] == ["public.bss_company", '"Sales"."OrderItems"', 'public."user"']
    assert parse_table_list(text) == refs
