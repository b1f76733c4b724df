"""Does memory stay bounded on huge input? A 5 GB PostgreSQL log and 10,000,000 OTLP spans.

Run from the repository root:

    .venv/bin/python benchmarks/huge_input.py                    # 5 GB log, 10M spans
    .venv/bin/python benchmarks/huge_input.py --log-gb 0.5 --spans 1000000   # a quicker look
    .venv/bin/python benchmarks/huge_input.py --only otlp

Generates (once, into benchmarks/data/, git-ignored):

- ``huge_<gb>gb.log``: a stderr log (``'%m [%p] '``, every statement with its duration), the
  1,000,000-statement log of ``benchmarks/ingest_pglog.py`` written again and again up to
  the size asked (so statements repeat; the reader does the same work for each);
- ``huge_<n>.pb``: ``n`` spans in the Collector's file-exporter framing, 10,000 spans per
  message, made with the opentelemetry-proto classes by ``benchmarks/ingest_otlp.py``'s
  generator: its first 200,000 spans, then those again and again with other ids, so that
  trace and span ids are distinct throughout (the generator alone takes over an hour for 10M).

Each file is then loaded by ``latkit.open(<file>.duckdb, memory_limit=...).load(<input>)``
in a fresh process (``--memory-limit``, default 256MB), and the parent reads that process's
peak resident set size from ``os.wait4`` (``ru_maxrss``), with the wall time. The child
samples its resident set size once a second; the peak of each quarter of the load shows
whether memory grows with the file or stays flat. Results go to
stdout as a table; they belong in docs/ or the README, not in asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data"
sys.path.insert(0, str(ROOT / "benchmarks"))

# The child: open an on-disk workbook with a memory limit, load one file, print the report
# and its resident memory over time (sampled in a thread: where in the load the peak falls).
CHILD = """
import json, sys, threading, time
import latkit

def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

samples = []
started = time.perf_counter()
def sample():
    while True:
        samples.append((round(time.perf_counter() - started, 1), round(rss_mib())))
        time.sleep(1.0)
threading.Thread(target=sample, daemon=True).start()
wb = latkit.open(sys.argv[2], memory_limit=sys.argv[3])
report = wb.load(sys.argv[1])
wb.close()
print(json.dumps({"seconds": time.perf_counter() - started, "rows": report.rows,
                  "read": report.read, "rejected": report.rejected, "rss": samples}))
"""


def pglog(gb: float) -> Path:
    """A stderr log of about ``gb`` GB (made once)."""
    import ingest_pglog

    path = DATA / f"huge_{gb:g}gb.log"
    if path.exists():
        return path
    base, _ = ingest_pglog.generate(1_000_000)
    block = base.read_bytes()
    target = int(gb * 1e9)
    print(f"writing {path} ({target / 1e9:.1f} GB) ...", flush=True)
    with open(f"{path}.tmp", "wb") as out:
        written = 0
        while written < target:
            out.write(block)
            written += len(block)
    Path(f"{path}.tmp").rename(path)
    return path


def otlp(spans: int) -> Path:
    """``spans`` spans, Collector-framed, 10,000 per message (made once)."""
    import ingest_otlp
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    path = DATA / f"huge_{spans}.pb"
    if path.exists():
        return path
    print(f"generating {spans:,} spans into {path} ...", flush=True)
    rng = random.Random(7)
    per_message = ingest_otlp.SPANS_PER_TRACE * ingest_otlp.TRACES_PER_MESSAGE
    messages = max(1, spans // per_message)
    made = [
        ingest_otlp.make_request(rng, 1_767_225_600_000_000_000 + m * 10**12)
        for m in range(min(messages, GENERATED_MESSAGES))
    ]
    with open(f"{path}.tmp", "wb") as out:
        for m in range(messages):
            request = made[m % len(made)]
            copy = m // len(made)
            if copy:
                request = ExportTraceServiceRequest.FromString(request.SerializeToString())  # type: ignore[attr-defined]
                _renumber(request, copy)
            body = request.SerializeToString()  # type: ignore[attr-defined]
            out.write(struct.pack(">I", len(body)) + body)
    Path(f"{path}.tmp").rename(path)
    return path


#: Messages made by the generator for a huge OTLP file (it makes about one a second); the
#: rest of the file repeats them with other trace and span ids (``_renumber``).
GENERATED_MESSAGES = 20


def _renumber(request: Any, copy: int) -> None:
    """Give every span of ``request`` new ids (its trace, its own, its parent's): the first
    four bytes of each are XORed with ``copy``, so that copies never collide."""

    def renumbered(old: bytes) -> bytes:
        return (int.from_bytes(old[:4], "big") ^ copy).to_bytes(4, "big") + old[4:]

    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                span.trace_id = renumbered(span.trace_id)
                span.span_id = renumbered(span.span_id)
                if span.parent_span_id:
                    span.parent_span_id = renumbered(span.parent_span_id)


def measure(source: Path, memory_limit: str) -> dict[str, object]:
    """Load ``source`` into a fresh on-disk workbook in a child process: its wall time, peak
    RSS and report."""
    workbook = DATA / f"{source.stem}.duckdb"
    for leftover in (workbook, Path(f"{workbook}.wal")):
        leftover.unlink(missing_ok=True)
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(source), str(workbook), memory_limit],
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    assert child.stdout is not None
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if child.returncode != 0:
        raise SystemExit(f"loading {source} failed (exit {child.returncode})")
    result = json.loads(output)
    result.update(
        wall_s=wall,
        peak_rss_mib=usage.ru_maxrss / 1024,  # KiB on Linux
        input_gb=source.stat().st_size / 1e9,
        workbook_gb=workbook.stat().st_size / 1e9,
    )
    workbook.unlink()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log-gb", type=float, default=5.0)
    parser.add_argument("--spans", type=int, default=10_000_000)
    parser.add_argument("--memory-limit", default="256MB")
    parser.add_argument("--only", choices=("pglog", "otlp"))
    args = parser.parse_args()
    DATA.mkdir(parents=True, exist_ok=True)
    inputs = []
    if args.only in (None, "pglog"):
        inputs.append(("pglog", pglog(args.log_gb)))
    if args.only in (None, "otlp"):
        inputs.append(("otlp", otlp(args.spans)))
    header = f"{'input':<28} {'GB':>6} {'records':>12} {'wall s':>8} {'rec/s':>9}"
    print(header, f"{'peak RSS MiB':>13}")
    for kind, path in inputs:
        r = measure(path, args.memory_limit)
        records = int(r["read"])  # type: ignore[call-overload]
        wall = float(r["wall_s"])  # type: ignore[arg-type]
        print(
            f"{kind + ' ' + path.name:<28} {r['input_gb']:>6.2f} {records:>12,} {wall:>8.1f} "
            f"{records / wall:>9,.0f} {r['peak_rss_mib']:>13,.0f}",
            flush=True,
        )
        print(f"  rows {r['rows']}, rejected {r['rejected']}, workbook {r['workbook_gb']:.2f} GB")
        samples: list[tuple[float, int]] = r["rss"]  # type: ignore[assignment]
        quarters = [
            max((mib for t, mib in samples if q * wall / 4 <= t < (q + 1) * wall / 4), default=0)
            for q in range(4)
        ]
        print(f"  peak RSS in each quarter of the load (MiB): {' / '.join(map(str, quarters))}")


if __name__ == "__main__":
    main()
