"""Fetching traces from a running Jaeger or Grafana Tempo, to load them like files.

Both backends are searched first, then each trace found is fetched by id and its answer
written, unchanged but for its line breaks, as one line of a JSON-lines file in a folder;
``Workbook.load`` reads that file with the Jaeger or OTLP JSON reader (one file rather than
one per trace: a reader pass costs a few tenths of a second whatever its size).
``Workbook.load_jaeger`` and ``Workbook.load_tempo`` do both steps; the functions here are for
keeping the files.

>>> from latkit import backends
>>> path = backends.fetch_jaeger("http://localhost:16686", "traces/", service="shop")
... # doctest: +SKIP
>>> path = backends.fetch_tempo("http://localhost:3200", "traces/",
...                              query='{ resource.service.name = "shop" }')  # doctest: +SKIP

HTTP is the standard library's ``urllib``. A request that fails for a reason that may pass
(the connection refused or reset, a timeout, HTTP 429, 502, 503 or 504) is tried again up to
``retries`` times, waiting ``backoff`` seconds, then twice that, and so on. Any other answer
that is not 200 raises ``latkit.LoadError`` naming the URL, the HTTP status and the start of
the body. A progress bar (tqdm, if installed) counts the traces fetched.
"""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from latkit.ingest import LoadError, excerpt

__all__ = ["fetch_jaeger", "fetch_tempo", "folder_for", "parse_duration"]

#: HTTP statuses worth another try: the backend is overloaded or restarting.
RETRY_STATUSES = frozenset({429, 502, 503, 504})

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(us|ms|s|m|h|d|w)")

T = TypeVar("T")


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``"1h"``, ``"90m"``, ``"2d"`` or ``"1h30m"``.

    >>> parse_duration("1h30m")
    5400.0
    """
    parts = _DURATION.findall(text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise ValueError(f"not a duration: {text!r} (write e.g. 30m, 1h, 2d)")
    return sum(float(n) * _UNITS[u] for n, u in parts)


@dataclass(frozen=True)
class _Http:
    """GET requests against one backend, with retries and errors that name the URL."""

    base: str
    timeout: float = 30.0
    retries: int = 4
    backoff: float = 0.5

    def __post_init__(self) -> None:
        scheme = urllib.parse.urlsplit(self.base).scheme
        if scheme not in ("http", "https"):
            raise LoadError(f"{self.base}: not an http(s) URL")

    def url(self, path: str, params: dict[str, Any] | None = None) -> str:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        tail = f"?{urllib.parse.urlencode(query)}" if query else ""
        return self.base.rstrip("/") + path + tail

    def get(self, path: str, params: dict[str, Any] | None = None) -> bytes:
        """The body of a 200 answer; ``LoadError`` otherwise (after retries where they help)."""
        url = self.url(path, params)
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                    return bytes(answer.read())
            except urllib.error.HTTPError as e:
                body = e.read()
                if e.code in RETRY_STATUSES and not last:
                    self._wait(attempt)
                    continue
                tries = f" after {attempt + 1} tries" if attempt else ""
                raise LoadError(
                    f"{url}: HTTP {e.code} {e.reason}{tries}: {excerpt(body, 300) or '(no body)'}"
                ) from e
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                if not last:
                    self._wait(attempt)
                    continue
                reason = getattr(e, "reason", e)
                raise LoadError(
                    f"{url}: cannot reach the server after {attempt + 1} tries: {reason}"
                ) from e
        raise AssertionError("unreachable")

    def json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        body = self.get(path, params)
        try:
            return json.loads(body)
        except ValueError as e:
            url = self.url(path, params)
            raise LoadError(f"{url}: the answer is not JSON: {excerpt(body)}") from e

    def _wait(self, attempt: int) -> None:
        time.sleep(self.backoff * 2**attempt)


def fetch_jaeger(
    url: str,
    folder: str | Path,
    *,
    service: str,
    operation: str | None = None,
    tags: dict[str, str] | None = None,
    lookback: str = "1h",
    limit: int = 20,
    timeout: float = 30.0,
    retries: int = 4,
    backoff: float = 0.5,
    progress: bool = True,
) -> Path:
    """Search a Jaeger query service and write the traces found to a file in ``folder``.

    Asks ``/api/services`` (to say clearly when ``service`` is unknown), then
    ``/api/traces?service=...&operation=...&tags=...&start=...&end=...&limit=...`` for the last
    ``lookback``, then ``/api/traces/<id>`` for each trace: one line each of
    ``jaeger-<service>-<UTC time>.jsonl``, the path returned.

    >>> fetch_jaeger("http://localhost:16686", "traces/", service="shop", lookback="2h")
    ... # doctest: +SKIP
    """
    http = _Http(url, timeout, retries, backoff)
    known = http.json("/api/services").get("data") or []
    if service not in known:
        raise LoadError(
            f"{url}: Jaeger has no service {service!r} "
            f"(it knows: {', '.join(sorted(known)) or 'none'})"
        )
    end = time.time()
    found = http.json(
        "/api/traces",
        {
            "service": service,
            "operation": operation,
            "tags": json.dumps(tags) if tags else None,
            "start": int((end - parse_duration(lookback)) * 1e6),
            "end": int(end * 1e6),
            "lookback": lookback,
            "limit": limit,
        },
    )
    ids = _unique(str(t["traceID"]).lower().rjust(32, "0") for t in found.get("data") or [])
    bodies = (http.get(f"/api/traces/{i}") for i in _progress(ids, progress, "Jaeger traces"))
    return _write_lines(Path(folder) / f"jaeger-{_safe(service)}-{_now()}.jsonl", bodies)


def fetch_tempo(
    url: str,
    folder: str | Path,
    *,
    query: str = "{}",
    start: datetime | float | None = None,
    end: datetime | float | None = None,
    lookback: str = "1h",
    limit: int = 20,
    timeout: float = 30.0,
    retries: int = 4,
    backoff: float = 0.5,
    progress: bool = True,
) -> Path:
    """Search Grafana Tempo with TraceQL and write the traces found to a file in ``folder``.

    Asks ``/api/search?q=<query>&start=&end=&limit=`` (``start``/``end`` as datetimes or Unix
    seconds; by default the last ``lookback``), then ``/api/v2/traces/<id>`` for each trace;
    a Tempo older than 2.5 answers 404 there, and then ``/api/traces/<id>`` is used. Tempo
    prints trace ids without leading zeros; they are padded to 32 hex. Each trace is one line
    of ``tempo-<UTC time>.jsonl``, the path returned.

    >>> fetch_tempo("http://localhost:3200", "traces/",
    ...             query='{ resource.service.name = "shop" && duration > 100ms }')
    ... # doctest: +SKIP
    """
    http = _Http(url, timeout, retries, backoff)
    until = _seconds(end) if end is not None else time.time()
    since = _seconds(start) if start is not None else until - parse_duration(lookback)
    found = http.json(
        "/api/search", {"q": query, "start": int(since), "end": int(until) + 1, "limit": limit}
    )
    ids = _unique(str(t["traceID"]).lower().rjust(32, "0") for t in found.get("traces") or [])
    v2 = True

    def fetch(trace_id: str) -> bytes:
        nonlocal v2
        if v2:
            try:
                return http.get(f"/api/v2/traces/{trace_id}")
            except LoadError as e:
                if not isinstance(e.__cause__, urllib.error.HTTPError) or e.__cause__.code != 404:
                    raise
                v2 = False  # an older Tempo: no v2 API (a missing trace is a 404 on v1 too)
        return http.get(f"/api/traces/{trace_id}")

    bodies = (fetch(i) for i in _progress(ids, progress, "Tempo traces"))
    return _write_lines(Path(folder) / f"tempo-{_now()}.jsonl", bodies)


@contextlib.contextmanager
def folder_for(folder: str | Path | None) -> Iterator[Path]:
    """``folder`` (created if needed), or a temporary folder removed afterwards."""
    if folder is not None:
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="latkit-") as tmp:
        yield Path(tmp)


def _write_lines(path: Path, bodies: Iterable[bytes]) -> Path:
    """Each JSON body as one line of ``path`` (JSON allows no raw line break inside a string,
    so replacing line breaks by spaces keeps each body the same JSON)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        for body in bodies:
            f.write(body.replace(b"\r", b" ").replace(b"\n", b" ").strip() + b"\n")
    return path


def _now() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _seconds(when: datetime | float) -> float:
    return when.timestamp() if isinstance(when, datetime) else float(when)


def _unique(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def _progress(items: list[T], enabled: bool, what: str) -> Iterable[T]:
    if not enabled or not items:
        return items
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, desc=what, unit="trace")
