"""Plain-text rules the domain and every provider share: text on one line, Chinese or not, a SELECT or not."""
from __future__ import annotations

import re

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_SQL_START = re.compile(r"^\s*(select|with)\b", re.I)


def collapse_whitespace(text: object) -> str:
    """The text on one line: every run of whitespace (line breaks included) one space, the ends trimmed.

    None gives "" (an absent comment renders as nothing, never as "None")."""
    return " ".join(str(text).split()) if text is not None else ""


def is_chinese(text: str | None) -> bool:
    """True when the text contains CJK ideographs (prompts and generated text then are Chinese)."""
    return bool(text and _CJK.search(text))


def is_select_sql(sql: str | None) -> bool:
    """True when the statement starts with SELECT or WITH (what a Question→SQL pair may hold)."""
    return bool(_SQL_START.match(sql or ""))
