"""Business themes of the heuristic provider: foreign-key clusters (large ones split into stars around a hub
table), padded with per-table themes, each named after its fact table with its entities and measures."""
from __future__ import annotations

from chalicelib.pipeline.models import TableDoc, Theme
from chalicelib.providers.heuristic.columns import date_columns, measure_columns, short_label, table_label

MAX_THEME_TABLES = 5


def _components(docs: list[TableDoc]) -> tuple[list[list[int]], dict[int, set[int]]]:
    index = {(d.meta.ref.schema, d.meta.ref.name): i for i, d in enumerate(docs)}
    edges: dict[int, set[int]] = {i: set() for i in range(len(docs))}
    for i, doc in enumerate(docs):
        for fk in doc.meta.relationships:
            j = index.get((fk.ref_schema, fk.ref_table))
            if j is not None and j != i:
                edges[i].add(j)
                edges[j].add(i)
    seen: set[int] = set()
    components = []
    for start in range(len(docs)):
        if start in seen:
            continue
        stack, component = [start], []
        seen.add(start)
        while stack:
            node = stack.pop()
            component.append(node)
            for nxt in sorted(edges[node]):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        components.append(sorted(component))
    return components, edges


def _split_by_hub(component: list[int], edges: dict[int, set[int]]) -> list[list[int]]:
    """Large clusters become stars: the best-connected table with its direct neighbours, repeatedly."""
    if len(component) <= MAX_THEME_TABLES:
        return [component]
    remaining = set(component)
    groups = []
    while remaining:
        hub = max(sorted(remaining), key=lambda n: len(edges[n] & remaining))
        group = [hub] + sorted(edges[hub] & remaining)[: MAX_THEME_TABLES - 1]
        groups.append(sorted(group))
        remaining -= set(group)
    return groups


def _richness(doc: TableDoc) -> int:
    """How much a table offers to templates: measures, confirmed enums, a date column."""
    return len(measure_columns(doc.meta)) + len(doc.enums) + (1 if date_columns(doc.meta) else 0)


def _main(members: list[TableDoc]) -> TableDoc:
    """The fact table of a cluster: most outgoing foreign keys, then most measures, then first."""
    return max(members, key=lambda d: (len(d.meta.relationships), len(measure_columns(d.meta)), -members.index(d)))


def extract_fk_themes(docs: list[TableDoc], zh: bool, count: int) -> list[Theme]:
    """Foreign-key clusters (big ones split by hub table), padded with per-table themes up to `count`."""
    if count <= 0 or not docs:
        return []
    components, edges = _components(docs)
    groups = [g for c in components for g in _split_by_hub(c, edges)]
    # Multi-table clusters first (they make the richest questions), then by size, then table order.
    groups.sort(key=lambda g: (-len(g), g[0]))
    themes: list[Theme] = []
    names: set[str] = set()
    for group in groups:
        themes.append(_theme([docs[i] for i in group], zh, names))
    if len(themes) < count:
        # Per-table themes: tables that did not lead a cluster first (a leader's own theme mostly repeats
        # its cluster's questions), richer tables first, then table order.
        singles = {g[0] for g in groups if len(g) == 1}
        leaders = {docs.index(_main([docs[i] for i in g])) for g in groups}
        padding = sorted(
            (i for i in range(len(docs)) if i not in singles),
            key=lambda i: (i in leaders, -_richness(docs[i]), i),
        )
        for i in padding[: count - len(themes)]:
            themes.append(_theme([docs[i]], zh, names))
    return themes[:count]


def _theme(members: list[TableDoc], zh: bool, names: set[str]) -> Theme:
    main = _main(members)
    main_label = table_label(main)
    ordered = [main] + [d for d in members if d is not main]
    topic = f"{main_label}分析" if zh else f"{main_label} analysis"
    if topic in names:
        topic = f"{topic}（{main.meta.ref.name}）" if zh else f"{topic} ({main.meta.ref.name})"
    names.add(topic)
    labels = [table_label(d) for d in ordered]
    refs = {(fk.ref_schema, fk.ref_table) for d in members for fk in d.meta.relationships}
    entities = [table_label(d) for d in ordered if (d.meta.ref.schema, d.meta.ref.name) in refs]
    if not entities:
        entities = [main_label]
    metrics = []
    for doc in ordered:
        for col in measure_columns(doc.meta):
            label = short_label(doc.column_comments.get(col.name) or col.comment or col.name) or col.name
            if label not in metrics:
                metrics.append(label)
    if zh:
        description = f"基于{'、'.join(labels)}的数据，分析{main_label}的记录数量、指标汇总、排名和时间趋势。"
    else:
        description = f"Counts, totals, rankings and time trends of {main_label}, based on {', '.join(labels)}."
    return Theme(
        topic_name=topic,
        description=description,
        related_tables=[d.meta.ref.display_name for d in ordered],
        biz_entities=entities,
        biz_metrics=metrics,
    )
