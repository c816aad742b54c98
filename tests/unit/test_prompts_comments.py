"""The comment prompt on hand-made metadata: distinct sampled values per uncommented column (one for an identifier),
never rows; a table whose columns are all commented asks for the table comment only, its relationships under their
own heading."""
from __future__ import annotations

from chalicelib.pipeline.models import ColumnMeta, ForeignKey, TableMeta, TableRef
from chalicelib.pipeline.prompt_budget import PromptBudget
from chalicelib.providers import prompts


def _meta(comments: dict[str, str | None]) -> TableMeta:
    columns = [ColumnMeta(name, "text", "text", "base", None, True, None, text) for name, text in comments.items()]
    return TableMeta(TableRef("public", "branch"), None, "table", columns, ["id"],
                     [ForeignKey("fk", ["area_id"], "public", "area", ["id"])], 3, True)


ROWS = [{"id": f"{n:032x}", "area_id": "a1", "brand": brand, "note": None}
        for n, brand in enumerate(["驿美", "驿购", "驿美", "肯德基", "赣味", "庐山", "驿购"])]


def test_distinct_values_per_uncommented_column_never_rows():
    (prompt,) = prompts.comments_prompts(_meta({"id": None, "area_id": "服务区ID", "brand": None, "note": None}),
                                         ROWS, "服务区", "zh", PromptBudget())
    lines = [line for line in prompt.splitlines() if line.startswith("- ")]
    assert lines == [f"- id (text, primary key): '{0:032x}'",  # an identifier: one value, its form
                     "- brand (text): '驿美', '驿购', '肯德基', '赣味', '庐山'",  # five distinct, in order seen
                     "- note (text)",
                     "- foreign key (area_id) -> public.area"]
    assert "已有数据库注释的字段（无需再写）：area_id（服务区ID）" in prompt and "{" not in prompt.split("输出格式")[0]


def test_all_columns_commented_asks_for_the_table_comment_only():
    meta = _meta({"id": "主键", "area_id": "服务区ID", "brand": "品牌", "note": "备注"})
    (zh,) = prompts.comments_prompts(meta, ROWS, "服务区", "zh", PromptBudget())
    assert "需要写注释的字段" not in zh and "关联：\n- foreign key (area_id) -> public.area" in zh
    assert "请写一个表注释（简洁的中文名）；所有字段都已有注释，columns 填 {}" in zh
    (en,) = prompts.comments_prompts(meta, ROWS, "branches", "en", PromptBudget())
    assert "Columns to comment" not in en and "Relationships:\n- foreign key" in en
    assert "every column already has a comment: columns is {}" in en
