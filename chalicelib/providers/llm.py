"""LLM providers: the `LLMProvider` port and its OpenAI-compatible adapter.

`OpenAIProvider` talks to any OpenAI-compatible endpoint through the `openai` client with its own retry
loop, robust JSON extraction (one re-ask on a malformed answer) and a process-wide concurrency bound.
`get_llm_provider()` picks it when LLM_BASE_URL is set, else the deterministic `HeuristicProvider`.
"""
from __future__ import annotations

import email.utils
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar
from urllib.parse import urlparse

import openai

from chalicelib import errors
from chalicelib.config import Settings, get_settings
from chalicelib.pipeline.models import (
    CommentSuggestion,
    LLMUsage,
    QAPair,
    RepairRequest,
    TableDoc,
    TableMeta,
    TableRef,
    Theme,
    quote_ident,
)
from chalicelib.providers.openai_client import shared_openai_client

logger = logging.getLogger(__name__)

T = TypeVar("T")

BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 30.0  # longest wait between attempts, Retry-After included
MAX_SAMPLE_ROWS = 20
MAX_SAMPLE_VALUE_CHARS = 80

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.S | re.I)
_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)```", re.S)
_SQL_START = re.compile(r"^\s*(select|with)\b", re.I)
# Answers that are an excuse rather than data must never become a comment or a SQL.
_APOLOGY = re.compile(
    r"(^\s*(i'?m sorry|sorry|i apologi[sz]e|as an ai|i cannot|i can'?t|unfortunately)\b)"
    r"|抱歉|对不起|无法提供|作为一个?AI",
    re.I,
)


class LLMProvider(Protocol):
    """What the pipeline asks of a language model. Implementations: OpenAIProvider, HeuristicProvider."""

    name: str
    kind: str  # "llm" (a language model wrote it) or "heuristic" (rules over the schema)
    usage: LLMUsage

    def suggest_table_comments(self, meta: TableMeta, samples: list[dict], business_context: str) -> CommentSuggestion:
        ...

    def extract_themes(self, docs: list[TableDoc], business_context: str, count: int) -> list[Theme]:
        ...

    def generate_pairs(self, theme: Theme, docs: list[TableDoc], business_context: str, count: int) -> list[QAPair]:
        ...

    def repair_sql(self, requests: list[RepairRequest], docs: list[TableDoc]) -> dict[int, str]:
        ...


def get_llm_provider(settings: Settings | None = None) -> LLMProvider:
    """OpenAIProvider when LLM_BASE_URL is configured, else the deterministic HeuristicProvider."""
    settings = settings or get_settings()
    if settings.has_llm:
        return OpenAIProvider(settings)
    from chalicelib.providers.heuristic import HeuristicProvider

    return HeuristicProvider()


# -- helpers shared with the heuristic provider and qa ---------------------------------------------------------


def is_chinese(text: str | None) -> bool:
    """True when the text contains CJK ideographs (prompts and generated text then are Chinese)."""
    return bool(text and _CJK.search(text))


def looks_like_apology(text: str) -> bool:
    return bool(_APOLOGY.search(text))


def is_select_sql(sql: str) -> bool:
    return bool(_SQL_START.match(sql or ""))


def _unquote(part: str) -> str:
    """`"we""ird"` -> `we"ird` (a quoted identifier as PostgreSQL reads it); other text as it is."""
    if len(part) >= 2 and part[0] == part[-1] == '"':
        return part[1:-1].replace('""', '"')
    return part.strip('"')


def find_doc(name: str, docs: list[TableDoc]) -> TableDoc | None:
    """The doc a (possibly quoted, possibly schema-less) table name refers to, or None."""
    cleaned = name.strip().strip(";").strip()
    parts = [_unquote(p.strip()) for p in re.split(r'\.(?=(?:[^"]*"[^"]*")*[^"]*$)', cleaned)]
    if len(parts) == 2:
        schema, table = parts
        exact = [d for d in docs if d.meta.ref.schema == schema and d.meta.ref.name == table]
        if exact:
            return exact[0]
        lowered = [d for d in docs if d.meta.ref.schema.lower() == schema.lower()
                   and d.meta.ref.name.lower() == table.lower()]
        return lowered[0] if len(lowered) == 1 else None
    if len(parts) != 1 or not parts[0]:
        return None
    table = parts[0]
    for candidates in (
        [d for d in docs if d.meta.ref.name == table and d.meta.ref.schema == "public"],
        [d for d in docs if d.meta.ref.name == table],
        [d for d in docs if d.meta.ref.name.lower() == table.lower()],
    ):
        if len(candidates) == 1:
            return candidates[0]
    return None


def select_theme_docs(theme: Theme, docs: list[TableDoc]) -> list[TableDoc]:
    """The docs of a theme's tables (in the theme's order); all docs when none of its tables is known."""
    chosen: list[TableDoc] = []
    for name in theme.related_tables:
        doc = find_doc(name, docs)
        if doc is not None and doc not in chosen:
            chosen.append(doc)
    return chosen or list(docs)


def render_schema_text(docs: list[TableDoc]) -> str:
    """Compact DDL-like text of the tables: columns, types, comments, enum values, keys."""
    blocks = []
    for doc in docs:
        meta = doc.meta
        head = f"create table {meta.ref.sql_name} ("
        if doc.table_comment or meta.comment:
            head += f"  -- {doc.table_comment or meta.comment}"
        lines = [head]
        for col in meta.columns:
            line = f"  {quote_ident(col.name)} {col.data_type}"  # quoted as SQL over it must write it
            if col.is_primary_key or col.name in meta.primary_key:
                line += " primary key"
            elif not col.nullable:
                line += " not null"
            notes = []
            comment = doc.column_comments.get(col.name) or col.comment
            if comment:
                notes.append(comment)
            values = doc.enums.get(col.name) or col.enum_values
            if values:
                notes.append("values: " + ", ".join(values[:20]))
            if notes:
                line += ",  -- " + "; ".join(notes)
            lines.append(line)
        for fk in meta.foreign_keys:
            lines.append(
                f"  foreign key ({', '.join(map(quote_ident, fk.columns))}) references "
                f"{TableRef(fk.ref_schema, fk.ref_table).sql_name} ({', '.join(map(quote_ident, fk.ref_columns))})"
            )
        lines.append(");")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_SAMPLE_VALUE_CHARS:
        return value[:MAX_SAMPLE_VALUE_CHARS] + "…"
    return value


# -- JSON extraction -------------------------------------------------------------------------------------------


class AnswerError(ValueError):
    """An answer that cannot be used; the message is shown to the model on the re-ask."""


def strip_think(text: str) -> str:
    """Drop reasoning blocks (`<think>…</think>`), including an unterminated or unopened one."""
    text = _THINK_BLOCK.sub("", text)
    lower = text.lower()
    if "</think>" in lower:  # some servers drop the opening tag
        text = text[lower.rindex("</think>") + len("</think>"):]
    elif "<think>" in lower:  # cut off mid-thought: nothing after it is an answer
        text = text[: lower.index("<think>")]
    return text.strip()


def extract_json(text: str | None) -> Any:
    """The first JSON object/array in an answer: fenced ```json blocks first, then the whole text, then a scan."""
    if not text or not text.strip():
        raise AnswerError("the answer was empty")
    text = strip_think(text)
    candidates = [m.group(1).strip() for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for candidate in candidates:
        try:
            value = json.loads(candidate)
            if isinstance(value, dict | list):
                return value
        except ValueError:
            pass
        for match in re.finditer(r"[\[{]", candidate):
            try:
                value, _ = decoder.raw_decode(candidate, match.start())
            except ValueError:
                continue
            if isinstance(value, dict | list):
                return value
    raise AnswerError("no JSON object found in the answer")


def _require_object(value: Any, key: str) -> Any:
    if isinstance(value, list) and key in ("themes", "pairs", "repairs"):
        return value  # a bare list is the wanted list
    if not isinstance(value, dict):
        raise AnswerError(f"expected a JSON object with the key {key!r}")
    if key not in value:
        raise AnswerError(f"the JSON object has no key {key!r}")
    return value[key]


def _object_items(value: Any, key: str) -> list[dict[str, Any]]:
    """The objects of the answer's list under `key` (non-objects skipped)."""
    items = _require_object(value, key)
    if not isinstance(items, list):
        raise AnswerError(f"{key!r} must be a list")
    return [item for item in items if isinstance(item, dict)]


def _text(value: Any) -> str | None:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        text = " ".join(str(value).split())
        if text and not looks_like_apology(text):
            return text
    return None


def _string_list(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [v for v in re.split(r"[,，、]", value)]
    if not isinstance(value, list):
        return []
    return [t for t in (_text(v) for v in value) if t]


def parse_comment_answer(value: Any) -> CommentSuggestion:
    if not isinstance(value, dict):
        raise AnswerError("expected a JSON object with table_comment, columns and enum_candidates")
    columns = value.get("columns", value.get("column_comments"))
    if columns is None:
        raise AnswerError("the JSON object has no key 'columns'")
    if isinstance(columns, list):  # [{"name":…, "comment":…}] is a common variant
        columns = {c.get("name") or c.get("column"): c.get("comment") for c in columns if isinstance(c, dict)}
    if not isinstance(columns, dict):
        raise AnswerError("'columns' must be an object mapping column name to comment")
    comments = {str(k): t for k, v in columns.items() if k and (t := _text(v))}
    return CommentSuggestion(
        table_comment=_text(value.get("table_comment")),
        column_comments=comments,
        enum_candidates=_string_list(value.get("enum_candidates", [])),
    )


def parse_themes_answer(value: Any, count: int) -> list[Theme]:
    items = _object_items(value, "themes")
    themes = []
    for item in items:
        name = _text(item.get("topic_name") or item.get("name"))
        tables = _string_list(item.get("related_tables"))
        if not name or not tables:
            continue
        themes.append(Theme(
            topic_name=name,
            description=_text(item.get("description")) or "",
            related_tables=tables,
            biz_entities=_string_list(item.get("biz_entities")),
            biz_metrics=_string_list(item.get("biz_metrics")),
        ))
    if not themes:
        raise AnswerError("no usable theme (each needs topic_name and related_tables)")
    return themes[:count]


def parse_pairs_answer(value: Any, count: int) -> list[QAPair]:
    items = _object_items(value, "pairs")
    pairs = []
    for item in items:
        question, sql = _text(item.get("question")), item.get("sql")
        if question and isinstance(sql, str) and is_select_sql(sql):
            pairs.append(QAPair(question=question, sql=sql.strip()))
    if not pairs:
        raise AnswerError("no usable pair (each needs a question and a SELECT/WITH sql)")
    return pairs[:count]


def parse_repairs_answer(value: Any, indexes: set[int]) -> dict[int, str]:
    items = _object_items(value, "repairs")
    repairs: dict[int, str] = {}
    for item in items:
        try:
            index = int(item.get("index"))
        except (TypeError, ValueError):
            continue
        sql = item.get("sql")
        if index in indexes and isinstance(sql, str) and is_select_sql(sql):
            repairs[index] = sql.strip()
    return repairs


# -- prompts ---------------------------------------------------------------------------------------------------

_SYSTEM = {
    "zh": "你是资深的 PostgreSQL 数据库专家和业务分析师。只输出一个 JSON 对象，不要输出任何其他文字。",
    "en": "You are a senior PostgreSQL database expert and business analyst. Reply with one JSON object only, "
          "no other text.",
}


def _lang(business_context: str) -> str:
    return "zh" if is_chinese(business_context) else "en"


def _comments_prompt(meta: TableMeta, samples: list[dict], business_context: str, lang: str) -> str:
    columns = []
    for col in meta.columns:
        line = f"- {col.name} ({col.data_type}{', primary key' if col.name in meta.primary_key else ''})"
        if col.comment:
            line += f" existing comment: {col.comment}"
        if col.enum_values:
            line += f" enum values: {', '.join(col.enum_values)}"
        columns.append(line)
    for fk in meta.foreign_keys:
        columns.append(f"- foreign key ({', '.join(fk.columns)}) -> {fk.ref_schema}.{fk.ref_table}")
    rows = "\n".join(
        json.dumps({k: _clip(v) for k, v in row.items()}, ensure_ascii=False, default=str)
        for row in samples[:MAX_SAMPLE_ROWS]
    ) or "(no rows)"
    shape = '{"table_comment": "...", "columns": {"column_name": "comment", ...}, "enum_candidates": ["column_name"]}'
    if lang == "zh":
        return (
            f"业务背景：{business_context}\n\n表：{meta.ref.display_name}\n现有表注释：{meta.comment or '无'}\n"
            f"字段：\n" + "\n".join(columns) + f"\n\n样例数据（最多 {MAX_SAMPLE_ROWS} 行）：\n{rows}\n\n"
            "请用简洁的中文为该表写一个表注释（中文名），并为每个字段写一个简短的中文注释；"
            "只使用上面列出的字段名，不要编造字段。enum_candidates 列出取值有限、像枚举的字段名。\n"
            f"输出格式：{shape}"
        )
    return (
        f"Business context: {business_context}\n\nTable: {meta.ref.display_name}\n"
        f"Existing table comment: {meta.comment or 'none'}\nColumns:\n" + "\n".join(columns)
        + f"\n\nSample rows (up to {MAX_SAMPLE_ROWS}):\n{rows}\n\n"
        "Write a short table comment and a short comment for every column, in English. Use only the column "
        "names listed above; do not invent columns. enum_candidates lists the columns that hold a small set of "
        f"values (enum-like).\nAnswer format: {shape}"
    )


def _themes_prompt(docs: list[TableDoc], business_context: str, count: int, lang: str) -> str:
    schema = render_schema_text(docs)
    shape = ('{"themes": [{"topic_name": "...", "description": "...", "related_tables": ["schema.table"], '
             '"biz_entities": ["..."], "biz_metrics": ["..."]}]}')
    if lang == "zh":
        return (
            f"业务背景：{business_context}\n\n数据库表结构：\n{schema}\n\n"
            f"请从这些表中归纳 {count} 个适合做数据分析问答的业务主题。related_tables 只能使用上面出现的表名"
            "（schema.table），biz_entities 是业务实体，biz_metrics 是可计算的业务指标。\n"
            f"输出格式：{shape}"
        )
    return (
        f"Business context: {business_context}\n\nDatabase tables:\n{schema}\n\n"
        f"Identify {count} business themes suited to analytical questions over these tables. related_tables may "
        "only use table names shown above (schema.table); biz_entities are business entities, biz_metrics are "
        f"measurable metrics.\nAnswer format: {shape}"
    )


def _pairs_prompt(theme: Theme, docs: list[TableDoc], business_context: str, count: int, lang: str) -> str:
    schema = render_schema_text(docs)
    shape = '{"pairs": [{"question": "...", "sql": "SELECT ...;"}]}'
    if lang == "zh":
        return (
            f"业务背景：{business_context}\n主题：{theme.topic_name}\n主题说明：{theme.description}\n"
            f"业务实体：{', '.join(theme.biz_entities)}\n业务指标：{', '.join(theme.biz_metrics)}\n\n"
            f"可用的表（只能使用这些表和字段）：\n{schema}\n\n"
            f"请生成 {count} 个不同的中文业务问题及对应的 PostgreSQL 查询（覆盖趋势、对比、排名 Top-N、汇总、明细）。"
            "每个问题和 SQL 都是单行；SQL 只能是 SELECT（或 WITH … SELECT），使用 PostgreSQL 语法，以分号结尾；"
            "只使用上面列出的表和字段；有 delete_ts 字段的表加上 delete_ts is null 条件。\n"
            f"输出格式：{shape}"
        )
    return (
        f"Business context: {business_context}\nTheme: {theme.topic_name}\nTheme description: {theme.description}\n"
        f"Entities: {', '.join(theme.biz_entities)}\nMetrics: {', '.join(theme.biz_metrics)}\n\n"
        f"Available tables (use only these tables and columns):\n{schema}\n\n"
        f"Write {count} distinct business questions in English with their PostgreSQL queries (cover trends, "
        "comparisons, top-N rankings, aggregates, details). Question and SQL each on one line; the SQL is a single "
        "SELECT (or WITH … SELECT) in PostgreSQL syntax ending with ';', using only the tables and columns above; "
        f"add `delete_ts is null` for tables that have a delete_ts column.\nAnswer format: {shape}"
    )


def _repair_prompt(requests: list[RepairRequest], docs: list[TableDoc], lang: str) -> str:
    items = json.dumps(
        [{"index": r.index, "question": r.question, "sql": r.sql, "error": r.error} for r in requests],
        ensure_ascii=False, indent=1,
    )
    shape = '{"repairs": [{"index": 0, "sql": "SELECT ...;"}]}'
    if lang == "zh":
        return (
            f"数据库表结构：\n{render_schema_text(docs)}\n\n下面这些 SQL 在 PostgreSQL 上执行 EXPLAIN 时报错。"
            "请根据错误信息和表结构逐个修复，保持问题的原意；只使用上面的表和字段；SQL 单行、以分号结尾、只能是 "
            f"SELECT/WITH。无法修复的不要输出。\n{items}\n\n输出格式：{shape}"
        )
    return (
        f"Database tables:\n{render_schema_text(docs)}\n\nThese SQL statements fail EXPLAIN on PostgreSQL. Fix each "
        "one using the error and the schema, keeping the question's meaning; only the tables and columns above; "
        "one line, ending with ';', SELECT/WITH only. Leave out what you cannot fix.\n"
        f"{items}\n\nAnswer format: {shape}"
    )


def _reask_text(error: str, lang: str) -> str:
    if lang == "zh":
        return f"你的回答无法使用：{error}。请重新回答，只输出符合要求格式的 JSON 对象，不要任何其他文字。"
    return f"Your answer could not be used: {error}. Answer again with only the JSON object in the required " \
           "format, no other text."


# -- the OpenAI-compatible provider ----------------------------------------------------------------------------

_SEMAPHORES: dict[int, threading.BoundedSemaphore] = {}
_SEMAPHORES_LOCK = threading.Lock()


def _process_semaphore(limit: int) -> threading.BoundedSemaphore:
    """One semaphore per configured limit, shared by every provider in the process."""
    limit = max(1, limit)
    with _SEMAPHORES_LOCK:
        if limit not in _SEMAPHORES:
            _SEMAPHORES[limit] = threading.BoundedSemaphore(limit)
        return _SEMAPHORES[limit]


def _retry_after_seconds(headers: Any) -> float | None:
    if headers is None:
        return None
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(raw) if raw else None
        if parsed is None:
            return None
        return max(0.0, parsed.timestamp() - time.time())


class OpenAIProvider:
    """Any OpenAI-compatible chat endpoint (OpenAI, DeepSeek, Qwen, vLLM, Ollama…).

    `usage.calls` counts every request sent (failed attempts included); `usage.retries` the repeated ones.
    """

    kind = "llm"

    def __init__(self, settings: Settings, *, client: openai.OpenAI | None = None,
                 backoff_base: float = BACKOFF_BASE_SECONDS, sleep: Callable[[float], None] = time.sleep):
        if not settings.llm_base_url:
            raise errors.LLMError("LLM_BASE_URL is not configured")
        self.settings = settings
        self.model = settings.llm_model
        self.name = f"openai-compatible:{self.model}"
        self.usage = LLMUsage(provider=self.name)
        parsed = urlparse(settings.llm_base_url)
        self.endpoint = parsed.netloc.rsplit("@", 1)[-1] or settings.llm_base_url
        self._client = client or shared_openai_client(
            settings.llm_base_url, settings.llm_api_key or "not-needed", settings.llm_timeout_seconds
        )
        self._semaphore = _process_semaphore(settings.llm_max_concurrency)
        self._backoff_base = backoff_base
        self._sleep = sleep
        self._usage_lock = threading.Lock()

    # -- public API ----------------------------------------------------------------------------------------

    def suggest_table_comments(self, meta: TableMeta, samples: list[dict], business_context: str) -> CommentSuggestion:
        lang = _lang(business_context)
        prompt = _comments_prompt(meta, samples, business_context, lang)
        return self._ask(prompt, lang, parse_comment_answer, f"comments for {meta.ref.display_name}")

    def extract_themes(self, docs: list[TableDoc], business_context: str, count: int) -> list[Theme]:
        lang = _lang(business_context)
        prompt = _themes_prompt(docs, business_context, count, lang)
        return self._ask(prompt, lang, lambda v: parse_themes_answer(v, count), "themes")

    def generate_pairs(self, theme: Theme, docs: list[TableDoc], business_context: str, count: int) -> list[QAPair]:
        lang = _lang(business_context)
        prompt = _pairs_prompt(theme, select_theme_docs(theme, docs), business_context, count, lang)
        return self._ask(prompt, lang, lambda v: parse_pairs_answer(v, count), f"pairs for theme {theme.topic_name}")

    def repair_sql(self, requests: list[RepairRequest], docs: list[TableDoc]) -> dict[int, str]:
        if not requests:
            return {}
        lang = "zh" if any(is_chinese(r.question) for r in requests) else "en"
        indexes = {r.index for r in requests}
        prompt = _repair_prompt(requests, docs, lang)
        return self._ask(prompt, lang, lambda v: parse_repairs_answer(v, indexes), "sql repairs")

    # -- internals -----------------------------------------------------------------------------------------

    def _describe(self) -> str:
        return f"LLM endpoint {self.endpoint} (model {self.model})"

    def _ask(self, prompt: str, lang: str, parse: Callable[[Any], T], what: str) -> T:
        """One question, one re-ask when the answer is unusable, then LLMBadAnswer."""
        messages: list[dict[str, str]] = [
            {"role": "system", "content": _SYSTEM[lang]},
            {"role": "user", "content": prompt},
        ]
        for attempt in (1, 2):
            answer = self._complete(messages)
            try:
                return parse(extract_json(answer))
            except AnswerError as exc:
                logger.warning("unusable LLM answer", extra={"what": what, "attempt": attempt, "error": str(exc)})
                if attempt == 2:
                    raise errors.LLMBadAnswer(
                        f"{self._describe()} gave an unusable answer for {what} twice: {exc}"
                    ) from None
                messages = messages + [
                    {"role": "assistant", "content": (answer or "")[:4000]},
                    {"role": "user", "content": _reask_text(str(exc), lang)},
                ]
        raise AssertionError("unreachable")

    def _scrub(self, text: str) -> str:
        key = self.settings.llm_api_key
        return text.replace(key, "***") if key else text

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, BACKOFF_CAP_SECONDS)
        delay = self._backoff_base * (2 ** attempt)
        return min(delay + random.uniform(0, delay / 2), BACKOFF_CAP_SECONDS)

    def _complete(self, messages: list[dict[str, str]]) -> str | None:
        """The assistant's text, retrying 429/5xx/timeouts/connection errors with backoff."""
        max_retries = max(0, self.settings.llm_max_retries)
        failure: errors.LLMError | None = None
        for attempt in range(max_retries + 1):
            retry_after: float | None = None
            started = time.monotonic()
            try:
                with self._semaphore:
                    started = time.monotonic()
                    response = self._client.chat.completions.create(
                        model=self.model, messages=messages, temperature=0.2,
                    )
                self._record(started, response)
                if not response.choices:
                    return None
                return response.choices[0].message.content
            except openai.RateLimitError as exc:
                self._record(started, None)
                retry_after = _retry_after_seconds(exc.response.headers)
                failure = errors.LLMRateLimited(
                    f"{self._describe()} is rate limiting (HTTP 429) after {attempt + 1} attempts"
                )
            except openai.APIStatusError as exc:
                self._record(started, None)
                detail = self._scrub(str(getattr(exc, "message", "")))[:300]
                if exc.status_code < 500:
                    raise errors.LLMError(
                        f"{self._describe()} rejected the request with HTTP {exc.status_code}: {detail}"
                    ) from None
                retry_after = _retry_after_seconds(exc.response.headers)
                failure = errors.LLMError(
                    f"{self._describe()} failed with HTTP {exc.status_code} after {attempt + 1} attempts: {detail}"
                )
            except openai.APITimeoutError:
                self._record(started, None)
                failure = errors.LLMTimeout(
                    f"{self._describe()} did not answer within {self.settings.llm_timeout_seconds:g} s "
                    f"after {attempt + 1} attempts"
                )
            except openai.APIConnectionError as exc:
                self._record(started, None)
                failure = errors.LLMError(
                    f"{self._describe()} could not be reached after {attempt + 1} attempts: "
                    f"{self._scrub(type(exc.__cause__ or exc).__name__)}"
                )
            if attempt < max_retries:
                with self._usage_lock:
                    self.usage.retries += 1
                delay = self._backoff(attempt, retry_after)
                logger.info("retrying LLM call", extra={"attempt": attempt + 1, "delay": round(delay, 2),
                                                        "error": str(failure)})
                self._sleep(delay)
        assert failure is not None
        raise failure

    def _record(self, started: float, response: Any) -> None:
        elapsed = time.monotonic() - started
        usage = getattr(response, "usage", None)
        with self._usage_lock:
            self.usage.calls += 1
            self.usage.seconds = round(self.usage.seconds + elapsed, 3)
            if usage is not None:
                self.usage.prompt_tokens += int(getattr(usage, "prompt_tokens", 0) or 0)
                self.usage.completion_tokens += int(getattr(usage, "completion_tokens", 0) or 0)
