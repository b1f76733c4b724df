"""Span trees built in code, for analysis tests whose right answers are known.

Times are given in milliseconds from an arbitrary origin; ``category`` is derived by the
same enrichment as real loads, from the kind and the attributes given.
"""

from __future__ import annotations

import itertools
from typing import Any

import pyarrow as pa

import latkit
from latkit import enrich, schema

_ids = itertools.count(1)
ORIGIN_NS = 1_700_000_000_000_000_000


def span(
    trace: str,
    name: str,
    start_ms: float,
    end_ms: float,
    *,
    parent: dict[str, Any] | None = None,
    parent_span_id: str | None = None,
    kind: str = "internal",
    service: str = "shop",
    status: str = "unset",
    span_id: str | None = None,
    **attributes: Any,
) -> dict[str, Any]:
    """One staged span; attribute names use ``_`` for ``.`` (``db_system`` = ``db.system``)."""
    return {
        "trace_id": trace.rjust(32, "0"),
        "span_id": span_id or f"{next(_ids):016x}",
        "parent_span_id": parent["span_id"] if parent else parent_span_id,
        "trace_state": "",
        "name": name,
        "kind": kind,
        "service": service,
        "start_ns": ORIGIN_NS + round(start_ms * 1e6),
        "end_ns": ORIGIN_NS + round(end_ms * 1e6),
        "status": status,
        "status_message": "",
        "scope": "tests",
        "attributes": [
            {"key": k.replace("_", "."), "value": str(v).lower() if isinstance(v, bool) else str(v)}
            for k, v in attributes.items()
        ],
        "resource_attributes": [{"key": "service.name", "value": service}],
        "events": [],
        "links": [],
    }


def server(trace: str, route: str, start_ms: float, end_ms: float, **kw: Any) -> dict[str, Any]:
    return span(trace, f"GET {route}", start_ms, end_ms, kind="server", http_route=route, **kw)


def db(
    parent: dict[str, Any], start_ms: float, end_ms: float, sql: str = "SELECT 1", **kw: Any
) -> dict[str, Any]:
    return span(
        parent["trace_id"],
        "SELECT",
        start_ms,
        end_ms,
        parent=parent,
        kind="client",
        service=parent["service"],
        db_system="postgresql",
        db_statement=sql,
        **kw,
    )


def cache(parent: dict[str, Any], start_ms: float, end_ms: float, **kw: Any) -> dict[str, Any]:
    return span(
        parent["trace_id"],
        "GET",
        start_ms,
        end_ms,
        parent=parent,
        kind="client",
        service=parent["service"],
        db_system="redis",
        db_statement="GET ?",
        **kw,
    )


def client(parent: dict[str, Any], start_ms: float, end_ms: float, **kw: Any) -> dict[str, Any]:
    return span(
        parent["trace_id"],
        "GET",
        start_ms,
        end_ms,
        parent=parent,
        kind="client",
        service=parent["service"],
        http_method="GET",
        **kw,
    )


def internal(
    parent: dict[str, Any], name: str, start_ms: float, end_ms: float, **kw: Any
) -> dict[str, Any]:
    return span(
        parent["trace_id"], name, start_ms, end_ms, parent=parent, service=parent["service"], **kw
    )


def callee(
    call: dict[str, Any], route: str, start_ms: float, end_ms: float, service: str = "inventory"
) -> dict[str, Any]:
    """The server span of a traced downstream service, child of the client span ``call``."""
    return span(
        call["trace_id"],
        f"GET {route}",
        start_ms,
        end_ms,
        parent=call,
        kind="server",
        service=service,
        http_route=route,
    )


def workbook(*spans: dict[str, Any]) -> latkit.Workbook:
    """An in-memory workbook holding exactly these spans, enriched as a real load would."""
    wb = latkit.open()
    add(wb, *spans)
    return wb


def add(wb: latkit.Workbook, *spans: dict[str, Any]) -> None:
    staged = enrich.stage_spans(pa.Table.from_pylist(list(spans), schema=schema.SPAN_STAGING))
    cur = wb.con.cursor()
    cur.register("_staged", staged)
    cur.execute(f"INSERT INTO spans {enrich.SPANS_SELECT}", {"source": "test", "load_id": 0})


def cache_set(
    parent: dict[str, Any],
    start_ms: float,
    end_ms: float,
    statement: str = "SETEX ? ? ?",
    **kw: Any,
) -> dict[str, Any]:
    """A cache write span (redis-py style: the command as name, arguments masked)."""
    return span(
        parent["trace_id"],
        statement.split()[0],
        start_ms,
        end_ms,
        parent=parent,
        kind="client",
        service=parent["service"],
        db_system="redis",
        db_statement=statement,
        **kw,
    )
