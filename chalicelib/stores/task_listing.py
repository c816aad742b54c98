"""Listing tasks newest first through the two indexes (never a Scan): by offset or page, by cursor, counts.
Mixed into TaskStore."""
from __future__ import annotations

from typing import Any

from boto3.dynamodb.conditions import Attr, Key

from chalicelib.stores.task_items import decode_cursor, encode_cursor, from_dynamo

ENTITY = "TASK"
GSI_BY_CREATED = "by_created"
GSI_BY_STATUS = "by_status"
# The counter item (not a task: no `entity`/`status`, so in no index; get_task refuses its key).
COUNTER_KEY = "#counters"


class TaskListing:
    """Needs `table` (the DynamoDB table) from the class it is mixed into."""

    table: Any

    def count_tasks(self) -> int:
        """Number of tasks: the counter item maintained by create_task (one GetItem, whatever the number).
        A table written before the counter existed falls back to counting through the index."""
        found = self.table.get_item(Key={"task_id": COUNTER_KEY}, ConsistentRead=True).get("Item")
        if found and "tasks_total" in found:
            return int(found["tasks_total"])
        return self._count(self._query_kwargs({}))

    def _count(self, kwargs: dict[str, Any]) -> int:
        total = 0
        for page_data in self._pages({**kwargs, "Select": "COUNT"}):
            total += page_data.get("Count", 0)
        return total

    def list_tasks(self, status: str | None = None, limit: int = 50, offset: int = 0) -> tuple[list[dict], int]:
        """Newest first; returns (page of items, total)."""
        return self.query_tasks({"status": status} if status else {}, offset // max(limit, 1) + 1, limit,
                                offset=offset)

    def query_tasks(self, filters: dict[str, Any], page: int = 1, page_size: int = 20, *,
                    offset: int | None = None) -> tuple[list[dict], int]:
        """Filtered listing, newest first. Filters: status, task_name (substring, case-insensitive),
        created_by, db_name (exact), created_time_start / created_time_end (`YYYY-MM-DDTHH:MM:SS`)."""
        kwargs = self._query_kwargs(filters)
        skip = offset if offset is not None else (page - 1) * page_size
        if any(filters.get(k) for k in filters):
            total = self._count(kwargs)  # filtered: counted through the (status) index, filters applied
        else:
            # Unfiltered: the counter item, and only as many index entries read as the page needs.
            total = self.count_tasks()
            kwargs["Limit"] = min(skip + page_size, 1000)
        items: list[dict] = []
        for page_data in self._pages(kwargs):
            for item in page_data.get("Items", []):
                if skip > 0:
                    skip -= 1
                    continue
                items.append(from_dynamo(item))
                if len(items) >= page_size:
                    return items, total
        return items, total

    def page_tasks(self, filters: dict[str, Any], limit: int = 50, cursor: str | None = None
                   ) -> tuple[list[dict], str | None]:
        """The next `limit` tasks of the filtered listing (newest first) after `cursor` (None: from the start),
        and the cursor of the page after them (None when there is none). Reads start where the cursor points
        (DynamoDB's ExclusiveStartKey): unlike an offset, no entry before the page is read again."""
        kwargs = self._query_kwargs(filters)
        kwargs["Limit"] = limit
        items: list[dict] = []
        for page_data in self._pages(kwargs, decode_cursor(cursor, kwargs["IndexName"])):
            found = page_data.get("Items", [])
            for n, item in enumerate(found):
                items.append(from_dynamo(item))
                if len(items) == limit:
                    more = n + 1 < len(found) or bool(page_data.get("LastEvaluatedKey"))
                    return items, encode_cursor(item, kwargs["IndexName"]) if more else None
        return items, None

    def cursor_after(self, item: dict[str, Any], filters: dict[str, Any]) -> str:
        """The cursor of the page that follows `item` in the listing with these filters."""
        return encode_cursor(item, self._query_kwargs(filters)["IndexName"])

    def count_matching(self, filters: dict[str, Any]) -> int:
        """How many tasks the listing with these filters holds (the counter item when unfiltered)."""
        if any(filters.get(k) for k in filters):
            return self._count(self._query_kwargs(filters))
        return self.count_tasks()

    def _pages(self, kwargs: dict[str, Any], start: dict[str, Any] | None = None):
        while True:
            call = dict(kwargs)
            if start:
                call["ExclusiveStartKey"] = start
            data = self.table.query(**call)
            yield data
            start = data.get("LastEvaluatedKey")
            if not start:
                return

    def _query_kwargs(self, filters: dict[str, Any]) -> dict[str, Any]:
        status = filters.get("status")
        if status:
            key = Key("status").eq(status)
            index = GSI_BY_STATUS
        else:
            key = Key("entity").eq(ENTITY)
            index = GSI_BY_CREATED
        start, end = filters.get("created_time_start"), filters.get("created_time_end")
        if start and end:
            key = key & Key("created_sort").between(start, end + "#\uffff")
        elif start:
            key = key & Key("created_sort").gte(start)
        elif end:
            key = key & Key("created_sort").lte(end + "#\uffff")
        conditions = []
        if filters.get("task_name"):
            conditions.append(Attr("task_name_lower").contains(str(filters["task_name"]).lower()))
        for name in ("created_by", "db_name"):
            if filters.get(name):
                conditions.append(Attr(name).eq(filters[name]))
        kwargs: dict[str, Any] = {"IndexName": index, "KeyConditionExpression": key, "ScanIndexForward": False}
        if conditions:
            combined = conditions[0]
            for extra in conditions[1:]:
                combined = combined & extra
            kwargs["FilterExpression"] = combined
        return kwargs
