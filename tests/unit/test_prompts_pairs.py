"""The pair prompt's pieces on hand-made docs: inferred relationships are named with their evidence and joined along
in the example; without any relationship the second example is a CTE with a window ranking; the CURRENT_DATE ban
only when the data ended before today; quoted mixed-case names stay quoted in the examples."""
from __future__ import annotations

import datetime as dt
import json

from chalicelib.pipeline.models import ColumnMeta, ForeignKey, TableDoc, TableMeta, TableRef, Theme
from chalicelib.pipeline.prompt_budget import PromptBudget
from chalicelib.providers import prompts
from chalicelib.providers.prompts_pairs import date_ranges, example_pairs, relationship_lines

ZH = "高速公路服务区管理"
TODAY = dt.date(2026, 12, 1)


def _col(name: str, data_type: str, udt: str, comment: str | None = None) -> ColumnMeta:
    return ColumnMeta(name, data_type, udt, "base", None, True, None, comment)


def _docs(*, inferred: bool = True, last_day: str = "2023-06-29") -> list[TableDoc]:
    area = TableMeta(TableRef("public", "ServiceArea"), "服务区", "table",
                     [_col("id", "integer", "int4"), _col("service_area_no", "text", "text", "服务区编码"),
                      _col("Area Name", "text", "text", "服务区名称")], ["id"], [], 15, True)
    key = ForeignKey("inferred_service_no", ["service_no"], "public", "ServiceArea", ["service_area_no"],
                     inferred=True, evidence="命名 service_no ↔ service_area_no；抽样 200 个值中 98% 命中")
    day = TableMeta(TableRef("public", "business_day"), "营业日数据", "table",
                    [_col("id", "integer", "int4"), _col("oper_date", "date", "date", "统计日期"),
                     _col("service_no", "text", "text", "服务区编码"),
                     _col("pay_sum", "numeric(19,4)", "numeric", "支付总金额"),
                     _col("delete_ts", "timestamp without time zone", "timestamp", "删除时间")],
                    ["id"], [], 5000, True, inferred_keys=[key] if inferred else [])
    return [
        TableDoc(day, "营业日数据", {}, {}, {}, [],
                 column_values={"service_no": ["1001", "1002"]},
                 value_ranges={"oper_date": ["2023-04-01", last_day], "pay_sum": ["10.5", "21178.15"],
                               "delete_ts": ["2023-04-05 05:10:00", "2023-07-03 02:31:00"]}),
        TableDoc(area, "服务区", {}, {}, {}, [],
                 column_values={"service_area_no": ["1001", "1002"], "Area Name": ["庐山服务区", "九江'服务区"]}),
    ]


def test_inferred_relationships_are_named_with_their_evidence_and_joined_along():
    docs = _docs()
    (line,) = relationship_lines(docs, "zh")
    assert line == ('- public.business_day.service_no = public."ServiceArea".service_area_no （推断关联：命名 '
                    'service_no ↔ service_area_no；抽样 200 个值中 98% 命中）')
    first, second = example_pairs(docs, "zh")
    assert second["sql"] == (
        'SELECT b."Area Name" AS 服务区名称, SUM(a.pay_sum) AS 支付总金额 FROM public.business_day a JOIN '
        'public."ServiceArea" b ON a.service_no = b.service_area_no WHERE a.delete_ts IS NULL GROUP BY '
        'b."Area Name" ORDER BY 2 DESC LIMIT 10;')
    assert first["sql"] == ("SELECT SUM(pay_sum) AS 支付总金额 FROM public.business_day WHERE service_no = '1001' "
                            "AND oper_date BETWEEN '2023-05-31' AND '2023-06-29' AND delete_ts IS NULL;")
    assert first["question"] == "1001在 2023-05-31 至 2023-06-29 期间的支付总金额合计是多少？"


def test_without_relationships_the_second_example_is_a_cte_with_a_window_ranking():
    docs = _docs(inferred=False)
    assert relationship_lines(docs, "en") == []
    _first, second = example_pairs(docs, "en")
    assert second["sql"].startswith("WITH t AS (SELECT service_no, SUM(pay_sum) AS total FROM public.business_day "
                                    "WHERE delete_ts IS NULL GROUP BY service_no) SELECT service_no AS service_no, ")
    assert "RANK() OVER (ORDER BY total DESC) AS ranking" in second["sql"]
    prompt = prompts.pairs_prompt(Theme("t", "d", [], [], []), docs, "service areas", 5, "en", PromptBudget(),
                                  today=TODAY)
    assert "Relationships (join only along these):\n(none)" in prompt


def test_the_current_date_ban_only_when_the_data_ended_in_the_past():
    theme = Theme("营收", "营收", ["public.business_day"], [], [])
    past = prompts.pairs_prompt(theme, _docs(), ZH, 5, "zh", PromptBudget(), today=TODAY)
    assert "数据截止于 2023-06-29，早于今天，不要使用 CURRENT_DATE" in past
    current = prompts.pairs_prompt(theme, _docs(last_day="2027-01-31"), ZH, 5, "zh", PromptBudget(), today=TODAY)
    assert "CURRENT_DATE" not in current and "日期条件必须落在上面的日期范围内" in current
    # Business dates only: the audit column's range is not among the filters to use.
    lines, latest = date_ranges(_docs())
    assert lines == ["- public.business_day.oper_date: 2023-04-01 .. 2023-06-29"] and latest == "2023-06-29"
    examples = [json.loads(line) for line in past.splitlines() if line.startswith('{"question"')]
    assert len(examples) == 2
    assert "e.g. '庐山服务区', '九江''服务区'" in past  # real values, quoted as SQL literals
