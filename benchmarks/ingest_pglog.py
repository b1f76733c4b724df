"""Time latkit's PostgreSQL log readers against pgBadger on the same 1,000,000-statement logs.

    .venv/bin/python benchmarks/ingest_pglog.py            # 1,000,000 statements, 3 runs each
    .venv/bin/python benchmarks/ingest_pglog.py --statements 200000 --runs 1

Generates (once, into benchmarks/data/) a csvlog and a stderr log (``'%m [%p] '``) of the
same workload: about 50 statement templates with varying literals, in sessions with
connection and disconnection lines, every statement with a ``duration:`` as
``log_min_duration_statement = 0`` writes it. Then, side by side and in one run:

- latkit: ``latkit.open().load(path)`` (reader, fingerprinting and insert into DuckDB), and
  the reader alone (its batches drained, no workbook);
- ``pgbadger -j 1`` and ``pgbadger -j 2`` (``-x json``, ``-q``).

Each is run in its own process so that peak RSS (``ru_maxrss`` of that process) is its own.
Results are printed as a table; the median of the runs is what counts (machines are noisy).
``--only pgbadger`` / ``--only latkit`` run one side (pgBadger takes minutes per run).

Measured 2026-11-28 on the 2-core development machine, shared with other sessions (load
average 4-9 throughout, so every figure is slower than on an idle machine), duckdb 2.0.1,
pgBadger 12.0; 1,000,000 statements (csvlog 240 MB, stderr 138 MB)::

    .venv/bin/python benchmarks/ingest_pglog.py --runs 1 --only pgbadger
    .venv/bin/python benchmarks/ingest_pglog.py --runs 3 --only latkit

    file    tool                 median s   stmts/s   peak MB   x pgbadger -j 1
    csvlog  pgbadger -j 1          618.68     1,616        35
    csvlog  pgbadger -j 2          402.89     2,482        35
    csvlog  latkit load             10.50    95,201      1102   59x
    csvlog  latkit reader only       6.24   160,277       623   99x
    stderr  pgbadger -j 1          504.05     1,984        35
    stderr  pgbadger -j 2          237.83     4,205        35
    stderr  latkit load             18.10    55,234      1196   28x
    stderr  latkit reader only      11.48    87,142       681   44x

The two sides ran one after the other, not interleaved, because pgBadger alone took half an
hour; the load from other sessions was heavier during the pgBadger runs, which flatters the
ratios. In CPU seconds (less sensitive to load): pgBadger -j 1 spent 38.8 s on 200,000 stderr
statements (about 195 s per million), latkit's stderr reader 9.3 s per million and its whole
load about 15 s. ``latkit load`` includes fingerprinting and the in-memory workbook's tables,
which hold every row (its memory grows with the file by design); the reader alone stays near
650 MB whatever the size (1M: 657 MB, 2M: 697 MB; a 200,000-line file, one chunk: 418 MB).
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data"
PREFIX = "%m [%p] "

TEMPLATES = [
    "SELECT * FROM orders WHERE id = {i}",
    "SELECT * FROM customers WHERE email = '{s}@example.com'",
    "SELECT id, total FROM orders WHERE customer_id = {i} AND status = 'open'",
    "UPDATE pgbench_accounts SET abalance = abalance + {n} WHERE aid = {i}",
    "SELECT abalance FROM pgbench_accounts WHERE aid = {i}",
    "UPDATE pgbench_tellers SET tbalance = tbalance + {n} WHERE tid = {i}",
    "UPDATE pgbench_branches SET bbalance = bbalance + {n} WHERE bid = {i}",
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) "
    "VALUES ({i}, {i}, {i}, {n}, CURRENT_TIMESTAMP)",
    "SELECT * FROM order_items WHERE order_id IN ({i}, {i}, {i})",
    "SELECT p.name, s.qty FROM products p JOIN stock s ON s.sku = p.sku WHERE p.id = {i}",
    "INSERT INTO events (kind, payload) VALUES ('{s}', '{{\"n\": {i}}}')",
    "DELETE FROM sessions WHERE expires_at < now() - interval '{i} minutes'",
    "SELECT count(*) FROM orders WHERE created_at > '2024-01-{d:02d}'",
    "BEGIN",
    "COMMIT",
]
for k in range(35):  # more shapes: same skeleton, different tables and columns
    TEMPLATES.append(f"SELECT col_{k}, other_{k} FROM table_{k} WHERE key_{k} = {{i}} LIMIT {{d}}")


def generate(statements: int, seed: int = 1) -> tuple[Path, Path]:
    """The stderr log and the csvlog of one workload (made once, then reused)."""
    DATA.mkdir(exist_ok=True)
    log = DATA / f"pglog_{statements}.log"
    csvlog = DATA / f"pglog_{statements}.csv"
    if log.exists() and csvlog.exists():
        return log, csvlog
    rng = random.Random(seed)
    t = datetime(2026, 1, 1, tzinfo=UTC)
    with log.open("w") as out, csvlog.open("w", newline="") as cout:
        writer = csv.writer(cout, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        done = 0
        pid = 1000
        while done < statements:
            pid += 1
            session = _Session(out, writer, pid, t)
            n_in_session = min(statements - done, rng.randint(20, 400))
            session.emit(t, "connection received: host=10.0.0.7 port=5432")
            session.emit(t, "connection authorized: user=app database=shop application_name=api")
            for _ in range(n_in_session):
                t += timedelta(microseconds=rng.randint(50, 3000))
                template = TEMPLATES[min(int(rng.expovariate(0.12)), len(TEMPLATES) - 1)]
                sql = template.format(i=rng.randint(1, 100_000), n=rng.randint(-5000, 5000),
                                      s=f"user{rng.randint(1, 9999)}", d=rng.randint(1, 28))
                session.emit(t, f"duration: {rng.lognormvariate(-1, 1.2):.3f} ms  statement: {sql}")
            done += n_in_session
            t += timedelta(milliseconds=5)
            session.emit(t, "disconnection: session time: 0:00:01.234 user=app database=shop "
                         "host=10.0.0.7 port=5432")
    return log, csvlog


class _Session:
    """Writes one session's entries to both logs, as the server would."""

    def __init__(self, out: Any, writer: Any, pid: int, start: datetime):
        self.out, self.writer, self.pid, self.start = out, writer, pid, start
        self.session_id = f"{int(start.timestamp()):x}.{pid:x}"
        self.line_num = 0

    def emit(self, t: datetime, msg: str) -> None:
        self.line_num += 1
        stamp = t.strftime("%Y-%m-%d %H:%M:%S.") + f"{t.microsecond // 1000:03d} UTC"
        self.out.write(f"{stamp} [{self.pid}] LOG:  {msg}\n")
        self.writer.writerow([
            stamp, "app", "shop", self.pid, "10.0.0.7:5432", self.session_id, self.line_num,
            "", self.start.strftime("%Y-%m-%d %H:%M:%S UTC"), "", 0, "LOG", "00000", msg,
            "", "", "", "", "", "", "", "", "api", "client backend", "", 0,
        ])


_LATKIT = """
import json, resource, sys, time
import latkit
path, mode = sys.argv[1], sys.argv[2]
t = time.perf_counter()
if mode == "load":
    wb = latkit.open()
    report = wb.load(path)
    n = report.rows.get("queries", 0)
else:
    from latkit.ingest import Source, Rows, detect
    source = Source.of(path)
    n = 0
    for item in detect(source).read(source):
        if isinstance(item, Rows) and item.table == "queries":
            n += item.batch.num_rows
s = time.perf_counter() - t
print(json.dumps({"seconds": s, "queries": n,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_latkit(path: Path, mode: str) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", _LATKIT, str(path), mode],
                          capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"latkit {mode} of {path} failed:\n{done.stderr}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run_pgbadger(path: Path, jobs: int, fmt: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t = time.perf_counter()
        cmd = ["pgbadger", "-q", "-j", str(jobs), "-x", "json", "-o", f"{tmp}/out.json",
               "-f", fmt, "--pid-dir", tmp, path.as_posix()]
        if fmt == "stderr":
            cmd[1:1] = ["--prefix", PREFIX]
        subprocess.run(cmd, check=True, capture_output=True)
        seconds = time.perf_counter() - t
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        with open(f"{tmp}/out.json") as f:
            info = json.load(f)["overall_stat"]
    queries = sum(v.get("queries_number", 0) for v in info.values() if isinstance(v, dict))
    # ru_maxrss of children is the largest child so far: exact for the first, a bound after.
    return {"seconds": seconds, "queries": queries, "rss_mb": max(rss, before) / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--statements", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", choices=("latkit", "pgbadger"), default=None,
                    help="run one side only (pgBadger takes minutes per run)")
    args = ap.parse_args()
    t = time.perf_counter()
    log, csvlog = generate(args.statements)
    print(f"data: {log.name} ({log.stat().st_size / 1e6:.0f} MB), {csvlog.name} "
          f"({csvlog.stat().st_size / 1e6:.0f} MB); made or found in "
          f"{time.perf_counter() - t:.1f} s")
    have_pgbadger = shutil.which("pgbadger") is not None
    rows: list[tuple[str, str, float, list[float], int, float, float | None]] = []
    for label, path, fmt in (("csvlog", csvlog, "csv"), ("stderr", log, "stderr")):
        contenders: list[tuple[str, Callable[[], dict[str, float]]]] = []
        if args.only != "pgbadger":
            contenders += [
                ("latkit load", functools.partial(run_latkit, path, "load")),
                ("latkit reader only", functools.partial(run_latkit, path, "read")),
            ]
        if have_pgbadger and args.only != "latkit":
            for jobs in (1, 2):
                contenders.append(
                    (f"pgbadger -j {jobs}", functools.partial(run_pgbadger, path, jobs, fmt))
                )
        results: dict[str, list[dict[str, float]]] = {}
        for _ in range(args.runs):
            for name, fn in contenders:
                results.setdefault(name, []).append(fn())
        base = (statistics.median(r["seconds"] for r in results["pgbadger -j 1"])
                if "pgbadger -j 1" in results else None)
        for name, measured in results.items():
            secs = statistics.median(r["seconds"] for r in measured)
            rows.append((label, name, secs, [r["seconds"] for r in measured],
                         int(measured[0]["queries"]), max(r["rss_mb"] for r in measured),
                         (base / secs) if base else None))
    print(f"\n{'file':<7} {'tool':<20} {'median s':>9} {'runs':<24} {'queries':>9} "
          f"{'stmts/s':>10} {'peak MB':>8} {'x pgbadger -j1':>14}")
    for label, name, secs, runs, queries, rss, speedup in rows:
        runs_text = " ".join(f"{r:.2f}" for r in runs)
        print(f"{label:<7} {name:<20} {secs:9.2f} {runs_text:<24} {queries:9,d} "
              f"{queries / secs:10,.0f} {rss:8.0f} "
              f"{'' if speedup is None else f'{speedup:.1f}x':>14}")
    if not have_pgbadger:
        print("\npgbadger is not installed (apt-get install pgbadger): no comparison")


if __name__ == "__main__":
    main()
