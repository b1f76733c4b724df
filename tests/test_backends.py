"""Loading from a running Jaeger or Tempo, against a local HTTP server that answers with the
real formats (tests/fixtures/zipkin_jaeger/, made by make_zipkin_jaeger.py)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

import latkit
from latkit import backends

FIXTURES = Path(__file__).parent / "fixtures" / "zipkin_jaeger"
EXPECTED = json.loads((Path(__file__).parent / "fixtures/otlp/expected.json").read_text())
JAEGER_NOT_FOUND = (
    b'{"data":null,"total":0,"limit":0,"offset":0,"errors":[{"code":404,"msg":"trace not found"}]}'
)


@dataclass
class Backend:
    """What the fake backend does, and what it was asked."""

    url: str = ""
    requests: list[str] = field(default_factory=list)
    fail_first: int = 0  # answer 503 to this many requests first
    status_500: bool = False
    old_tempo: bool = False  # no /api/v2


def _jaeger_traces(service: str) -> bytes:
    doc = json.loads((FIXTURES / "jaeger_api_traces.json").read_text())
    doc["data"] = [
        t for t in doc["data"] if any(p["serviceName"] == service for p in t["processes"].values())
    ]
    return json.dumps(doc).encode()


def _answer(backend: Backend, path: str, query: dict[str, list[str]]) -> tuple[int, bytes]:
    if backend.fail_first > 0:
        backend.fail_first -= 1
        return 503, b"upstream connect error"
    if backend.status_500:
        return 500, b'{"errors":[{"code":500,"msg":"cassandra: no hosts available"}]}'
    parts = path.strip("/").split("/")
    if path == "/api/services":
        return 200, (FIXTURES / "jaeger_services.json").read_bytes()
    if path == "/api/traces":
        return 200, _jaeger_traces(query["service"][0])
    if path == "/api/search":
        return 200, (FIXTURES / "tempo_search.json").read_bytes()
    if parts[:2] == ["api", "traces"] and len(parts) == 3:
        # Jaeger's trace by id, or Tempo's v1 one (the same path) when playing an older Tempo
        name = FIXTURES / f"{'tempo_v1' if backend.old_tempo else 'jaeger_trace'}_{parts[2]}.json"
        return (200, name.read_bytes()) if name.exists() else (404, JAEGER_NOT_FOUND)
    if parts[:3] == ["api", "v2", "traces"] and not backend.old_tempo:
        name = FIXTURES / f"tempo_v2_{parts[3]}.json"
        if name.exists():
            return 200, name.read_bytes()
        return 404, b"trace not found"
    return 404, b"404 page not found"


@pytest.fixture
def backend() -> Iterator[Backend]:
    state = Backend()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            state.requests.append(self.path)
            split = urlsplit(self.path)
            status, body = _answer(state, split.path, parse_qs(split.query))
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _spans_of(service_in_trace: str) -> int:
    traces = {s["trace_id"] for s in EXPECTED["spans"] if s["service"] == service_in_trace}
    return sum(1 for s in EXPECTED["spans"] if s["trace_id"] in traces)


def test_load_jaeger_searches_then_fetches_each_trace(backend: Backend) -> None:
    wb = latkit.open()
    report = wb.load_jaeger(backend.url, service="shop", lookback="2h", limit=50, progress=False)
    assert report.rows == {"spans": _spans_of("shop")}
    assert report.rejected == 0
    assert backend.requests[0] == "/api/services"
    search = parse_qs(urlsplit(backend.requests[1]).query)
    assert search["service"] == ["shop"] and search["limit"] == ["50"]
    assert int(search["end"][0]) - int(search["start"][0]) == 2 * 3600 * 1_000_000
    fetched = sorted(r.rsplit("/", 1)[1] for r in backend.requests[2:])
    shop_traces = sorted({s["trace_id"] for s in EXPECTED["spans"] if s["service"] == "shop"})
    assert fetched == shop_traces
    assert set(wb.sql("select distinct service from spans")["service"]) == {"shop", "inventory"}


def test_load_jaeger_keeps_the_file_in_a_folder_when_asked(
    backend: Backend, tmp_path: Path
) -> None:
    wb = latkit.open()
    wb.load_jaeger(backend.url, service="inventory", folder=tmp_path, progress=False)
    (kept,) = tmp_path.iterdir()
    assert kept.name.startswith("jaeger-inventory-") and kept.suffix == ".jsonl"
    assert len(kept.read_text().splitlines()) == 5  # one line per trace
    assert wb.sql("select distinct source from spans")["source"].to_list() == [str(kept)]


def test_load_jaeger_names_the_services_it_knows_when_the_service_is_unknown(
    backend: Backend,
) -> None:
    known = r"no service 'billing' \(it knows: inventory, shop\)"
    with pytest.raises(latkit.LoadError, match=known):
        latkit.open().load_jaeger(backend.url, service="billing", progress=False)


def test_load_tempo_uses_the_v2_trace_api(backend: Backend) -> None:
    wb = latkit.open()
    report = wb.load_tempo(backend.url, query='{ resource.service.name = "shop" }', progress=False)
    assert report.rows == {"spans": EXPECTED["n_spans"]}
    search = parse_qs(urlsplit(backend.requests[0]).query)
    assert search["q"] == ['{ resource.service.name = "shop" }']
    assert int(search["end"][0]) - int(search["start"][0]) in (3600, 3601)
    assert all(r.startswith("/api/v2/traces/") for r in backend.requests[1:])


def test_load_tempo_falls_back_to_the_v1_api_on_an_older_tempo(backend: Backend) -> None:
    backend.old_tempo = True
    wb = latkit.open()
    report = wb.load_tempo(backend.url, progress=False)
    assert report.rows == {"spans": EXPECTED["n_spans"]}
    assert backend.requests[1].startswith("/api/v2/traces/")  # tried once, answered 404
    assert all(r.startswith("/api/traces/") for r in backend.requests[2:])
    assert len(backend.requests) == 2 + len(EXPECTED["traces"])


def test_a_backend_that_fails_twice_with_503_is_retried(backend: Backend, tmp_path: Path) -> None:
    backend.fail_first = 2
    path = backends.fetch_tempo(backend.url, tmp_path, backoff=0.01, progress=False)
    assert len(path.read_text().splitlines()) == len(EXPECTED["traces"])
    assert backend.requests[0] == backend.requests[1] == backend.requests[2]  # the search, 3x


def test_too_many_503s_give_up_with_the_status(backend: Backend, tmp_path: Path) -> None:
    backend.fail_first = 10
    with pytest.raises(latkit.LoadError, match=r"/api/search\?.*: HTTP 503 .* after 3 tries"):
        backends.fetch_tempo(backend.url, tmp_path, retries=2, backoff=0.01, progress=False)


def test_an_http_500_names_the_url_the_status_and_the_body(backend: Backend) -> None:
    backend.status_500 = True
    with pytest.raises(latkit.LoadError) as error:
        latkit.open().load_jaeger(backend.url, service="shop", backoff=0.01, progress=False)
    message = str(error.value)
    assert message.startswith(f"{backend.url}/api/services: HTTP 500")
    assert "cassandra: no hosts available" in message
    assert len(backend.requests) == 1  # a 500 is not retried


def test_a_server_that_cannot_be_reached_is_a_clear_error() -> None:
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(latkit.LoadError, match=rf"^{url}/api/services: cannot reach the server "
                       r"after 3 tries: .*[Rr]efused"):
        latkit.open().load_jaeger(url, service="shop", retries=2, backoff=0.01, progress=False)


def test_a_trace_missing_on_fetch_is_an_error_naming_it(backend: Backend) -> None:
    missing = "abc".rjust(32, "0")
    expected = rf"/api/traces/{missing}: HTTP 404 .*trace not found"
    with pytest.raises(latkit.LoadError, match=expected):
        backends._Http(backend.url).get(f"/api/traces/{missing}")


def test_only_http_urls_are_fetched(tmp_path: Path) -> None:
    with pytest.raises(latkit.LoadError, match="not an http"):
        backends.fetch_tempo("file:///etc", tmp_path, progress=False)


def test_the_progress_bar_counts_traces(backend: Backend, tmp_path: Path, capsys) -> None:
    backends.fetch_tempo(backend.url, tmp_path, progress=True)
    assert "Tempo traces" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "seconds"), [("1h", 3600.0), ("90m", 5400.0), ("2d", 172800.0), ("1h30m", 5400.0)]
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert backends.parse_duration(text) == seconds


def test_parse_duration_rejects_what_it_cannot_read() -> None:
    with pytest.raises(ValueError, match="not a duration"):
        backends.parse_duration("an hour")
