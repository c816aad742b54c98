"""What every prompt shares: the system prompts, the language, the room a user message has, the business context
as shown, and the answer shapes (the JSON Schema of each answer and the compact form every prompt states)."""
from __future__ import annotations

from typing import Any

from chalicelib.pipeline.prompt_budget import MESSAGE_OVERHEAD_TOKENS, PromptBudget, clip_to_tokens, estimate_tokens
from chalicelib.pipeline.text import is_chinese

CONTEXT_MAX_TOKENS = 1000  # the business context, as the user wrote it, cut to this

SYSTEM_PROMPTS = {
    "zh": "你是资深的 PostgreSQL 数据库专家和业务分析师。只输出一个 JSON 对象，不要输出任何其他文字。",
    "en": "You are a senior PostgreSQL database expert and business analyst. Reply with one JSON object only, "
          "no other text.",
}


def prompt_language(business_context: str) -> str:
    """"zh" when the business context is Chinese, else "en"."""
    return "zh" if is_chinese(business_context) else "en"


def room_for_user_prompt(budget: PromptBudget, lang: str) -> int:
    """Tokens the user message may take beside the system prompt."""
    return budget.prompt_tokens - estimate_tokens(SYSTEM_PROMPTS[lang]) - 2 * MESSAGE_OVERHEAD_TOKENS


def context_text(business_context: str) -> str:
    return clip_to_tokens(" ".join((business_context or "").split()), CONTEXT_MAX_TOKENS)


# -- answer shapes ----------------------------------------------------------------------------------------------

# The JSON Schema of each answer (the keys chalicelib.providers.answers reads), for endpoints that accept a
# `response_format`; each prompt states the same keys in ANSWER_KEYS' compact form.
_STRINGS = {"type": "array", "items": {"type": "string"}}
ANSWER_SCHEMAS: dict[str, dict[str, Any]] = {
    "comments": {"type": "object", "required": ["table_comment", "columns", "enum_candidates"],
                 "properties": {"table_comment": {"type": ["string", "null"]},
                                "columns": {"type": "object", "additionalProperties": {"type": "string"}},
                                "enum_candidates": _STRINGS}},
    "themes": {"type": "object", "required": ["themes"], "properties": {"themes": {"type": "array", "items": {
        "type": "object", "required": ["topic_name", "description", "related_tables", "biz_entities", "biz_metrics"],
        "properties": {"topic_name": {"type": "string"}, "description": {"type": "string"},
                       "related_tables": _STRINGS, "biz_entities": _STRINGS, "biz_metrics": _STRINGS}}}}},
    "pairs": {"type": "object", "required": ["pairs"], "properties": {"pairs": {"type": "array", "items": {
        "type": "object", "required": ["question", "sql"],
        "properties": {"question": {"type": "string"}, "sql": {"type": "string"}}}}}},
    "repairs": {"type": "object", "required": ["repairs"], "properties": {"repairs": {"type": "array", "items": {
        "type": "object", "required": ["index", "sql"],
        "properties": {"index": {"type": "integer"}, "sql": {"type": "string"}}}}}},
}
ANSWER_KEYS = {
    "comments": {"zh": '{"table_comment": "表注释" 或 null, "columns": {"字段名": "注释"}, '
                       '"enum_candidates": ["字段名"]}',
                 "en": '{"table_comment": "comment" or null, "columns": {"column_name": "comment"}, '
                       '"enum_candidates": ["column_name"]}'},
    "themes": {"zh": '{"themes": [{"topic_name": "主题名", "description": "说明", "related_tables": ["schema.table"], '
                     '"biz_entities": ["实体"], "biz_metrics": ["指标"]}]}',
               "en": '{"themes": [{"topic_name": "name", "description": "text", "related_tables": ["schema.table"], '
                     '"biz_entities": ["entity"], "biz_metrics": ["metric"]}]}'},
    "pairs": {"zh": '{"pairs": [{"question": "问题", "sql": "SELECT …;"}]}',
              "en": '{"pairs": [{"question": "question", "sql": "SELECT …;"}]}'},
    "repairs": {"zh": '{"repairs": [{"index": 0, "sql": "SELECT …;"}]}',
                "en": '{"repairs": [{"index": 0, "sql": "SELECT …;"}]}'},
}


def answer_format(kind: str, lang: str) -> str:
    """The closing line of every prompt: one JSON object with exactly the keys the parser reads."""
    if lang == "zh":
        return f"输出格式：只输出一个 JSON 对象，键与结构严格如下（不要增加其他键）：{ANSWER_KEYS[kind]['zh']}"
    return ("Answer format: one JSON object with exactly these keys and this structure (no other keys): "
            + ANSWER_KEYS[kind]["en"])


