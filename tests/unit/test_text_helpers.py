"""The domain's one text helper for one-line text, and the shared is_chinese / is_select_sql rules."""
from __future__ import annotations

from chalicelib.pipeline.text import collapse_whitespace, is_chinese, is_select_sql


def test_collapse_whitespace():
    assert collapse_whitespace("  a\n\tb   c \r\n") == "a b c"
    assert collapse_whitespace(None) == ""
    assert collapse_whitespace(42) == "42"
    assert collapse_whitespace("服务区\u3000名称") == "服务区 名称"  # the ideographic space is whitespace too


def test_rules_shared_by_domain_and_providers():
    assert is_chinese("高速公路") and not is_chinese("highway") and not is_chinese(None)
    assert is_select_sql("  with t as (select 1) select * from t") and is_select_sql("SELECT 1")
    assert not is_select_sql("delete from t") and not is_select_sql(None)

