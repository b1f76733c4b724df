"""Regenerate everything under sample_data/ from scratch (run through sample-data.sh / make).

1. A private PostgreSQL cluster (Debian's postgresql package: initdb on a free loopback port,
   run as the `postgres` system user when we are root) with pg_stat_statements and
   auto_explain preloaded, and a Redis server (Debian's redis-server) on loopback.
2. Setup, with statement/connection logging switched off: roles, databases, schema.sql
   (deterministic data, >= 300k rows in customers), ANALYZE, pg_stat_statements_reset().
3. Restart PostgreSQL with full logging (stderr + csvlog + jsonlog in a fresh directory):
   only the workload is in the committed logs.
4. Start inventory and shop (separate processes, OpenTelemetry-instrumented), run the
   fixed-seed load generator (sequential, a concurrent burst, sequential), stop the services
   with SIGTERM (they flush their spans and write their own counters), stop Redis and
   PostgreSQL.
5. Restart PostgreSQL quietly again: export pg_stat_statements as CSV, EXPLAIN (ANALYZE,
   BUFFERS, FORMAT JSON) the workload's queries, and measure the Seq Scan query before and
   after its fixing index (created inside a transaction that is rolled back).
6. Copy the outputs into sample_data/ (logs gzipped), build the variants
   (make_variants.py), write sample_data/truth.json from the demo's own counters, fill the
   generated table of sample_data/README.md, and run check.py (files agree with truth.json).
"""

from __future__ import annotations

import datetime as dt
import glob
import gzip
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLE = os.path.dirname(HERE)
RUN = os.path.join(HERE, "run")
OUT = os.path.join(RUN, "out")
SEED = 20240521
N_REQUESTS = 3000
BURST_START, BURST_LEN, BURST_THREADS = 1400, 400, 16
CACHE_TTL_S = 10
AUTO_EXPLAIN_MS = 5

sys.path.insert(0, HERE)
import loadgen  # noqa: E402


def log(msg: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {msg}", flush=True)


def free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def wait_port(port: int, timeout: float = 60.0, proc=None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing listening on {port}")


def gzip_file(src: str, dst: str) -> None:
    """gzip without a name or timestamp in the header (identical inputs give identical files)."""
    with open(src, "rb") as fin, open(dst, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as fout:
            shutil.copyfileobj(fin, fout)


def pg_template(sql: str) -> str:
    """The driver's %s placeholders as PostgreSQL numbers them ($1, $2, ...)."""
    counter = iter(range(1, 1000))
    return re.sub(r"%s", lambda m: f"${next(counter)}", sql)


def pct(values) -> dict:
    a = np.asarray(values, dtype=float)
    if a.size == 0:
        return {"count": 0}
    p50, p95, p99 = np.percentile(a, [50, 95, 99])  # linear interpolation (numpy default)
    return {
        "count": int(a.size),
        "min": round(float(a.min()), 3),
        "p50": round(float(p50), 3),
        "p95": round(float(p95), 3),
        "p99": round(float(p99), 3),
        "mean": round(float(a.mean()), 3),
        "max": round(float(a.max()), 3),
    }


class Postgres:
    def __init__(self, port: int):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not bins:
            raise SystemExit("initdb not found: apt-get install postgresql")
        self.bin = os.path.dirname(bins[-1])
        self.port = port
        self.tmp = tempfile.mkdtemp(prefix="latkit-pg-")
        self.data = os.path.join(self.tmp, "data")
        self.sock = os.path.join(self.tmp, "sock")
        self.log_dir = os.path.join(self.tmp, "log")
        self.quiet_log_dir = os.path.join(self.tmp, "log-quiet")
        self.as_user = []
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]
        os.makedirs(self.sock)
        if self.as_user:
            shutil.chown(self.tmp, "postgres", "postgres")
            shutil.chown(self.sock, "postgres", "postgres")

    def run(self, *args, **kw):
        return subprocess.run(self.as_user + list(args), check=True, **kw)

    def initdb(self) -> None:
        self.run(
            os.path.join(self.bin, "initdb"),
            "-D",
            self.data,
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            stdout=subprocess.DEVNULL,
        )
        conf = f"""
# --- latkit demo ---
listen_addresses = '127.0.0.1'
port = {self.port}
unix_socket_directories = '{self.sock}'
shared_preload_libraries = 'pg_stat_statements,auto_explain'
timezone = 'UTC'
log_timezone = 'UTC'
lc_messages = 'C'
logging_collector = on
log_destination = 'stderr,csvlog,jsonlog'
log_directory = '{self.log_dir}'
log_filename = 'postgresql.log'
log_rotation_age = 0
log_rotation_size = 0
log_line_prefix = '%m [%p] %q%u@%d '
log_min_duration_statement = 0
log_connections = on
log_disconnections = on
auto_explain.log_min_duration = '{AUTO_EXPLAIN_MS}ms'
auto_explain.log_analyze = on
auto_explain.log_buffers = on
auto_explain.log_format = json
"""
        with open(os.path.join(self.data, "postgresql.conf"), "a") as fh:
            fh.write(conf)

    def start(self, quiet: bool) -> None:
        opts = ""
        if quiet:
            opts = (
                f"-c log_directory={self.quiet_log_dir} -c log_min_duration_statement=-1 "
                "-c log_connections=off -c log_disconnections=off "
                "-c auto_explain.log_min_duration=-1"
            )
        self.run(
            os.path.join(self.bin, "pg_ctl"),
            "-D",
            self.data,
            "-w",
            "-s",
            "-l",
            os.path.join(self.tmp, "pg_ctl.log"),
            "-o",
            opts,
            "start",
        )

    def stop(self) -> None:
        self.run(
            os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-w", "-s", "-m", "fast", "stop"
        )

    def psql(self, db: str, user: str, sql: str | None = None, file: str | None = None) -> None:
        cmd = [
            os.path.join(self.bin, "psql"),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            user,
            "-d",
            db,
        ]
        cmd += ["-f", file] if file else ["-c", sql]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)

    def dsn(self, db: str, user: str, app: str) -> str:
        return f"host=127.0.0.1 port={self.port} dbname={db} user={user} application_name={app}"

    def cleanup(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def load_schema(pg: Postgres) -> None:
    pg.psql("postgres", "postgres", "CREATE ROLE shop_app LOGIN; CREATE ROLE inventory_app LOGIN;")
    pg.psql("postgres", "postgres", "CREATE DATABASE shop OWNER shop_app")
    pg.psql("postgres", "postgres", "CREATE DATABASE inventory OWNER inventory_app")
    pg.psql("postgres", "postgres", "CREATE EXTENSION pg_stat_statements")
    text = open(os.path.join(HERE, "schema.sql")).read()
    sections = re.split(r"^-- @database (\w+)\s*$", text, flags=re.M)
    for i in range(1, len(sections), 2):
        db, body = sections[i], sections[i + 1]
        path = os.path.join(RUN, f"schema-{db}.sql")
        with open(path, "w") as fh:
            fh.write(body)
        t0 = time.time()
        pg.psql(db, f"{db}_app", file=path)
        log(f"schema {db} loaded in {time.time() - t0:.1f}s")
    pg.psql("postgres", "postgres", "SELECT pg_stat_statements_reset()")


def start_service(name: str, config_path: str, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONUNBUFFERED"] = "1"
    logf = open(os.path.join(RUN, f"{name}.log"), "w")
    proc = subprocess.Popen(
        [sys.executable, os.path.join(HERE, f"{name}.py"), config_path],
        cwd=HERE,
        env=env,
        stdout=logf,
        stderr=subprocess.STDOUT,
    )
    wait_port(port, proc=proc)
    return proc


def stop_service(proc: subprocess.Popen, name: str) -> dict:
    proc.terminate()  # SIGTERM: the service flushes its spans and writes its counters
    proc.wait(timeout=60)
    with open(os.path.join(OUT, f"{name}.stats.json")) as fh:
        return json.load(fh)


EXPLAINS = [
    # name, database, user, sql (parameters as sent by the service, inlined client-side)
    (
        "customers_by_email",
        "shop",
        "SELECT id, email, full_name, country, created_at FROM customers WHERE email = %s",
        ("user123456@example.com",),
    ),
    (
        "order_items_by_order",
        "shop",
        "SELECT id, product_id, quantity, unit_price_cents FROM order_items WHERE order_id = %s ORDER BY id",
        (4242,),
    ),
    ("product_name_by_id", "shop", "SELECT name, sku FROM products WHERE id = %s", (1234,)),
    (
        "order_items_join",
        "shop",
        "SELECT oi.id, oi.product_id, p.sku, p.name, oi.quantity, oi.unit_price_cents "
        "FROM order_items oi JOIN products p ON p.id = oi.product_id WHERE oi.order_id = %s ORDER BY oi.id",
        (4242,),
    ),
    (
        "product_by_id",
        "shop",
        "SELECT id, sku, name, price_cents, category_id, description FROM products WHERE id = %s",
        (1234,),
    ),
    (
        "order_by_id",
        "shop",
        "SELECT id, customer_id, shipping_code, total_cents FROM orders WHERE id = %s",
        (4242,),
    ),
    (
        "shipping_method_by_code_decoy",
        "shop",
        "SELECT id, name, price_cents, max_days FROM shipping_methods WHERE code = %s",
        ("SHIP07",),
    ),
    (
        "checkout_items",
        "shop",
        "SELECT p.sku, oi.quantity FROM order_items oi JOIN products p ON p.id = oi.product_id "
        "WHERE oi.order_id = %s ORDER BY oi.id LIMIT 3",
        (4242,),
    ),
    (
        "daily_report",
        "shop",
        "SELECT count(*), coalesce(sum(total_cents), 0) FROM orders WHERE created_at >= %s AND created_at < %s",
        (dt.date(2024, 3, 1), dt.date(2024, 3, 2)),
    ),
    (
        "catalog_export",
        "shop",
        "SELECT id, sku, name, price_cents, description FROM products WHERE category_id = %s ORDER BY id",
        (7,),
    ),
    (
        "stock_by_sku",
        "inventory",
        "SELECT w.name, w.city, s.quantity FROM stock s JOIN warehouses w ON w.id = s.warehouse_id "
        "WHERE s.sku = %s ORDER BY w.id",
        ("SKU-01234",),
    ),
]
SEQ_SCAN_INDEX = "CREATE INDEX customers_email_idx ON customers (email)"


def plan_nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def explain_and_export(pg: Postgres, out_pg: str) -> dict:
    import psycopg
    from psycopg.types.string import TextLoader

    os.makedirs(os.path.join(out_pg, "explain"), exist_ok=True)
    with psycopg.connect(pg.dsn("postgres", "postgres", "latkit-export"), autocommit=True) as conn:
        with conn.cursor() as cur, open(os.path.join(out_pg, "pg_stat_statements.csv"), "wb") as fh:
            with cur.copy(
                "COPY (SELECT d.datname AS database, r.rolname AS user_name, s.* "
                "FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
                "JOIN pg_roles r ON r.oid = s.userid WHERE d.datname IN ('shop', 'inventory') "
                "ORDER BY s.total_exec_time DESC) TO STDOUT WITH (FORMAT csv, HEADER)"
            ) as copy:
                for block in copy:
                    fh.write(block)
        version = conn.execute("SELECT version()").fetchone()[0]

    results = {"server_version": version, "explains": {}}

    def explain(cur, sql, params, repeat=3):
        stmt = cur.mogrify(sql, params)
        times, text = [], None
        for _ in range(repeat):
            cur.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + stmt)
            text = cur.fetchone()[0]
            times.append(json.loads(text)[0]["Execution Time"])
        return stmt, text, times

    def save(name, stmt, text):
        with open(os.path.join(out_pg, "explain", f"{name}.json"), "w") as fh:
            fh.write(text + "\n")
        with open(os.path.join(out_pg, "explain", f"{name}.sql"), "w") as fh:
            fh.write(stmt + ";\n")

    def summary(text):
        plan = json.loads(text)[0]["Plan"]
        return [
            {
                "node_type": n["Node Type"],
                "relation": n.get("Relation Name"),
                "index": n.get("Index Name"),
                "parallel_aware": n.get("Parallel Aware"),
                "actual_rows": n.get("Actual Rows"),
                "rows_removed_by_filter": n.get("Rows Removed by Filter"),
            }
            for n in plan_nodes(plan)
        ]

    for db in ("shop", "inventory"):
        conn = psycopg.connect(pg.dsn(db, f"{db}_app", "latkit-explain"), autocommit=True)
        conn.adapters.register_loader("json", TextLoader)  # keep EXPLAIN's JSON text as sent
        with psycopg.ClientCursor(conn) as cur:
            for name, edb, sql, params in EXPLAINS:
                if edb != db:
                    continue
                stmt, text, times = explain(cur, sql, params)
                suffix = "_before_index" if name == "customers_by_email" else ""
                save(name + suffix, stmt, text)
                results["explains"][name + suffix] = {
                    "database": db,
                    "template": sql,
                    "execution_ms": times,
                    "execution_ms_median": statistics.median(times),
                    "nodes": summary(text),
                }
                if name == "customers_by_email":
                    cur.execute("BEGIN")
                    cur.execute(SEQ_SCAN_INDEX)
                    stmt, text, times = explain(cur, sql, params)
                    cur.execute("ROLLBACK")
                    save(name + "_after_index", stmt, text)
                    results["explains"][name + "_after_index"] = {
                        "database": db,
                        "template": sql,
                        "index_created": SEQ_SCAN_INDEX,
                        "execution_ms": times,
                        "execution_ms_median": statistics.median(times),
                        "nodes": summary(text),
                    }
        conn.close()
    return results


def main() -> None:
    t_start = time.time()
    shutil.rmtree(RUN, ignore_errors=True)
    os.makedirs(OUT)
    pg_port, redis_port, shop_port, inv_port = free_ports(4)
    pg = Postgres(pg_port)
    procs: dict[str, subprocess.Popen] = {}
    redis_proc = None
    try:
        log(f"initdb in {pg.tmp} (PostgreSQL binaries {pg.bin}), port {pg_port}")
        pg.initdb()
        pg.start(quiet=True)
        load_schema(pg)
        pg.stop()
        log("setup done; restarting PostgreSQL with full logging")
        pg.start(quiet=False)

        os.makedirs(os.path.join(RUN, "redis"))
        redis_proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                os.path.join(RUN, "redis"),
                "--logfile",
                os.path.join(RUN, "redis.log"),
            ]
        )
        wait_port(redis_port, proc=redis_proc)

        config = {
            "outdir": OUT,
            "redis_port": redis_port,
            "shop_port": shop_port,
            "inventory_port": inv_port,
            "cache_ttl_s": CACHE_TTL_S,
            "shop_dsn": pg.dsn("shop", "shop_app", "shop"),
            "inventory_dsn": pg.dsn("inventory", "inventory_app", "inventory"),
        }
        config_path = os.path.join(RUN, "config.json")
        with open(config_path, "w") as fh:
            json.dump(config, fh, indent=1)
        procs["inventory"] = start_service("inventory", config_path, inv_port)
        procs["shop"] = start_service("shop", config_path, shop_port)
        log("services up; running the load")

        plan = loadgen.plan_requests(SEED, N_REQUESTS)
        t0 = time.time()
        results = loadgen.run(
            f"http://127.0.0.1:{shop_port}", plan, BURST_START, BURST_LEN, BURST_THREADS
        )
        load_s = time.time() - t0
        log(f"{len(results)} requests in {load_s:.1f}s")
        with open(os.path.join(RUN, "loadgen.jsonl"), "w") as fh:
            for r in results:
                fh.write(json.dumps(r) + "\n")

        import redis as redis_py

        redis_info = redis_py.Redis(host="127.0.0.1", port=redis_port).info()
        time.sleep(1.5)
        stats = {"shop": stop_service(procs.pop("shop"), "shop")}
        stats["inventory"] = stop_service(procs.pop("inventory"), "inventory")
        redis_proc.terminate()
        redis_proc.wait(timeout=30)
        redis_proc = None
        pg.stop()
        log("services, Redis and PostgreSQL stopped")

        # ---- outputs -------------------------------------------------------------------
        traces_dir = os.path.join(SAMPLE, "traces")
        pg_dir = os.path.join(SAMPLE, "postgres")
        for d in (traces_dir, pg_dir, os.path.join(SAMPLE, "variants")):
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d)
        for svc in ("shop", "inventory"):
            shutil.copyfile(
                os.path.join(OUT, f"{svc}.otlp.pb"), os.path.join(traces_dir, f"{svc}.otlp.pb")
            )
            gzip_file(
                os.path.join(OUT, f"{svc}.otlp.jsonl"),
                os.path.join(traces_dir, f"{svc}.otlp.jsonl.gz"),
            )
        log_files = {}
        for ext in ("log", "csv", "json"):
            src = os.path.join(pg.log_dir, f"postgresql.{ext}")
            subprocess.run(["cp", src, os.path.join(RUN, f"postgresql.{ext}")], check=True)
            gzip_file(src, os.path.join(pg_dir, f"postgresql.{ext}.gz"))
            log_files[ext] = sum(1 for _ in open(src, "rb"))

        pg.start(quiet=True)
        explains = explain_and_export(pg, pg_dir)
        pg.stop()
        log("pg_stat_statements exported, EXPLAINs written")

        subprocess.run([sys.executable, os.path.join(HERE, "make_variants.py")], check=True)
        truth = build_truth(results, stats, redis_info, explains, load_s, log_files)
        with open(os.path.join(SAMPLE, "truth.json"), "w") as fh:
            json.dump(truth, fh, indent=1, sort_keys=False)
            fh.write("\n")
        update_readme(truth)
        subprocess.run([sys.executable, os.path.join(HERE, "check.py")], check=True)
        log(f"done in {time.time() - t_start:.0f}s")
    finally:
        for proc in procs.values():
            proc.kill()
        if redis_proc is not None:
            redis_proc.kill()
        if os.path.exists(os.path.join(pg.data, "postmaster.pid")):
            try:
                pg.stop()
            except Exception:
                pass
        pg.cleanup()


def _count_records(path: str) -> str:
    """A description of the records in one output file (for the README's file table)."""
    import csv
    import struct

    opener = gzip.open if path.endswith(".gz") else open
    if path.endswith(".otlp.pb"):
        data, pos, msgs = open(path, "rb").read(), 0, 0
        while pos < len(data):
            pos += 4 + struct.unpack_from(">I", data, pos)[0]
            msgs += 1
        return f"{msgs} length-prefixed ExportTraceServiceRequest messages"
    if ".otlp.jsonl" in path:
        n = sum(1 for _ in opener(path, "rb"))
        return f"{n} lines (one ExportTraceServiceRequest each)"
    if path.endswith(".csv.gz") or path.endswith(".csv"):
        with opener(path, "rt", newline="") as fh:
            n = sum(1 for _ in csv.reader(fh))
        return f"{n - (0 if 'postgresql' in path else 1)} CSV records"
    n = sum(1 for _ in opener(path, "rb"))
    return f"{n} lines"


def update_readme(truth: dict) -> None:
    """Fill the generated part of sample_data/README.md (file sizes and counts of this run)."""
    readme = os.path.join(SAMPLE, "README.md")
    if not os.path.exists(readme):
        return
    spans = truth["spans"]
    rows = ["| file | bytes | contents |", "|---|---:|---|"]
    for root in ("traces", "postgres", "variants"):
        for dirpath, _, files in sorted(os.walk(os.path.join(SAMPLE, root))):
            for name in sorted(files):
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, SAMPLE)
                if "/explain/" in rel:
                    continue
                what = _count_records(path)
                svc = name.split(".")[0]
                if root in ("traces", "variants") and svc in spans["spans_per_service"]:
                    what += f"; {spans['spans_per_service'][svc]} spans"
                rows.append(f"| `{rel}` | {os.path.getsize(path):,} | {what} |")
    n_explain = len(glob.glob(os.path.join(SAMPLE, "postgres", "explain", "*.json")))
    rows.append(
        f"| `postgres/explain/*.json` + `*.sql` | "
        f"{sum(os.path.getsize(p) for p in glob.glob(os.path.join(SAMPLE, 'postgres', 'explain', '*'))):,} | "
        f"{n_explain} plans and the statements explained |"
    )
    rows.append(
        f"| `truth.json` | {os.path.getsize(os.path.join(SAMPLE, 'truth.json')):,} | ground truth |"
    )
    run = truth["run"]
    lines = [
        f"Generated run: seed {run['seed']}, {run['requests']} requests in {run['load_seconds']} s, "
        f"{spans['total_spans']} spans in {spans['traces']} traces "
        f"(shop {spans['spans_per_service']['shop']}, inventory {spans['spans_per_service']['inventory']}), "
        f"{truth['statements_total']} SQL statements executed by the services, "
        f"{run['postgres_version'].split(' on ')[0]}, Redis {run['redis_version']}.",
        "",
    ] + rows
    text = open(readme).read()
    begin, end = "<!-- generated:begin -->", "<!-- generated:end -->"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1]
        text = head + begin + "\n" + "\n".join(lines) + "\n" + end + tail
        with open(readme, "w") as fh:
            fh.write(text)


def build_truth(results, stats, redis_info, explains, load_s, log_lines) -> dict:
    routes = {}
    for route, _ in loadgen.MIX:
        rs = [r for r in results if r["route"] == route]
        status = {}
        for r in rs:
            status[str(r["status"])] = status.get(str(r["status"]), 0) + 1
        routes[route] = {
            "service": "shop",
            "requests": len(rs),
            "status": status,
            "client_latency_ms": pct([r["latency_ms"] for r in rs]),
            "client_latency_ms_sequential": pct(
                [r["latency_ms"] for r in rs if r["phase"] == "sequential"]
            ),
            "client_latency_ms_burst": pct([r["latency_ms"] for r in rs if r["phase"] == "burst"]),
        }

    shop, inv = stats["shop"], stats["inventory"]
    exp = {s: stats[s]["exporter"] for s in stats}
    all_traces = set()
    for s in exp.values():
        all_traces.update(s["trace_ids"])
    spans = {
        "total_spans": sum(e["spans"] for e in exp.values()),
        "traces": len(all_traces),
        "spans_per_service": {s: e["spans"] for s, e in exp.items()},
        "traces_per_service": {s: e["traces"] for s, e in exp.items()},
        "root_spans_per_service": {s: e["root_spans"] for s, e in exp.items()},
        "spans_per_service_and_kind": {s: e["spans_by_kind"] for s, e in exp.items()},
        "spans_per_service_and_name": {s: e["spans_by_name"] for s, e in exp.items()},
        "server_spans_per_route": {s: e["server_spans_by_route"] for s, e in exp.items()},
        "error_spans": {s: e["error_spans"] for s, e in exp.items()},
        "export_batches_per_service": {s: e["export_batches"] for s, e in exp.items()},
        "counted_by": "each service's exporter, over every span it encoded and wrote",
    }

    server_requests = {}
    for s in stats.values():
        for r in s["requests"]:
            key = f"{s['service']} {r['route']}"
            server_requests.setdefault(
                key, {"service": s["service"], "route": r["route"], "requests": 0, "status": {}}
            )
            server_requests[key]["requests"] += r["count"]
            server_requests[key]["status"][str(r["status"])] = r["count"]

    statements = []
    for s in stats.values():
        for q in s["sql"]:
            statements.append(
                {
                    "service": s["service"],
                    "database": q["database"],
                    "template": q["sql"],
                    "pg_template": pg_template(q["sql"]),
                    "count": q["count"],
                }
            )
    statements.sort(key=lambda x: -x["count"])

    n_items = shop["lists"].get("nplus1_items_per_request", [])
    cache = shop["cache"]["product:{id}"]
    hits, misses = cache.get("hit", 0), cache.get("miss", 0)
    connect_ms = shop["lists"].get("reports_connect_ms", [])
    ex = explains["explains"]
    before, after = ex["customers_by_email_before_index"], ex["customers_by_email_after_index"]
    own = shop["lists"].get("catalog_export_own_code_ms", [])
    inv_calls = {
        k.rsplit("_", 1)[1]: v
        for k, v in shop["counts"].items()
        if k.startswith("inventory_calls_status_")
    }

    return {
        "about": (
            "Ground truth of the sample data, counted by the demo itself (the services' own "
            "counters, the exporters' counts of what they wrote, the load generator's "
            "client-side timings, Redis INFO, EXPLAIN ANALYZE run by the generator); never "
            "derived from the telemetry files. See sample_data/README.md."
        ),
        "run": {
            "seed": SEED,
            "requests": len(results),
            "load_seconds": round(load_s, 1),
            "burst": {"start_index": BURST_START, "requests": BURST_LEN, "threads": BURST_THREADS},
            "postgres_version": explains["server_version"],
            "redis_version": redis_info.get("redis_version"),
            "postgres_log_lines": log_lines,
            "percentiles": "linear interpolation between ranks (numpy.percentile default)",
        },
        "routes": routes,
        "server_requests": list(server_requests.values()),
        "spans": spans,
        "statements": statements,
        "statements_total": sum(s["count"] for s in statements),
        "seq_scan": {
            "route": "/customers/by-email",
            "service": "shop",
            "database": "shop",
            "table": "customers",
            "column": "email",
            "table_rows": 300000,
            "template": before["template"],
            "pg_template": pg_template(before["template"]),
            "fix": SEQ_SCAN_INDEX,
            "explain_before": {
                "file": "postgres/explain/customers_by_email_before_index.json",
                "execution_ms_median": before["execution_ms_median"],
                "execution_ms": before["execution_ms"],
                "node_types": [n["node_type"] for n in before["nodes"]],
            },
            "explain_after": {
                "file": "postgres/explain/customers_by_email_after_index.json",
                "execution_ms_median": after["execution_ms_median"],
                "execution_ms": after["execution_ms"],
                "node_types": [n["node_type"] for n in after["nodes"]],
                "index_used": [n["index"] for n in after["nodes"] if n["index"]],
            },
            "speedup": round(
                before["execution_ms_median"] / max(after["execution_ms_median"], 1e-6), 1
            ),
        },
        "decoy_seq_scan": {
            "route": "/checkout/<int:order_id>",
            "service": "shop",
            "database": "shop",
            "table": "shipping_methods",
            "table_rows": 12,
            "column": "code",
            "template": ex["shipping_method_by_code_decoy"]["template"],
            "node_types": [n["node_type"] for n in ex["shipping_method_by_code_decoy"]["nodes"]],
            "execution_ms_median": ex["shipping_method_by_code_decoy"]["execution_ms_median"],
            "should_be_flagged": False,
        },
        "n_plus_one": {
            "route": "/orders/<int:order_id>/items-slow",
            "service": "shop",
            "list_template": "SELECT id, product_id, quantity, unit_price_cents FROM order_items WHERE order_id = %s ORDER BY id",
            "per_item_template": "SELECT name, sku FROM products WHERE id = %s",
            "per_item_pg_template": "SELECT name, sku FROM products WHERE id = $1",
            "requests_with_items": len(n_items),
            "requests_404": routes["/orders/<int:order_id>/items-slow"]["status"].get("404", 0),
            "n_per_request": {
                "min": min(n_items),
                "max": max(n_items),
                "median": float(np.median(n_items)),
                "mean": round(float(np.mean(n_items)), 3),
            },
            "n_distribution": {str(k): n_items.count(k) for k in sorted(set(n_items))},
            "per_item_queries_total": sum(n_items),
            "join_route": "/orders/<int:order_id>/items",
            "join_template": (
                "SELECT oi.id, oi.product_id, p.sku, p.name, oi.quantity, oi.unit_price_cents "
                "FROM order_items oi JOIN products p ON p.id = oi.product_id "
                "WHERE oi.order_id = %s ORDER BY oi.id"
            ),
            "join_queries_per_request": 1,
        },
        "cache": {
            "route": "/products/<int:product_id>",
            "service": "shop",
            "system": "redis",
            "key_patterns": {
                "product:{id}": {
                    "gets": hits + misses,
                    "hits": hits,
                    "misses": misses,
                    "hit_rate": round(hits / max(hits + misses, 1), 4),
                    "misses_not_found": cache.get("miss_not_found", 0),
                    "sets": cache.get("set", 0),
                    "ttl_s": CACHE_TTL_S,
                    "popularity": "Zipf-like, weight 1/rank**1.1 over 5000 ids; 4% unknown ids (404, no SET)",
                }
            },
            "redis_info": {
                k: redis_info.get(k)
                for k in (
                    "keyspace_hits",
                    "keyspace_misses",
                    "expired_keys",
                    "evicted_keys",
                    "total_commands_processed",
                    "total_connections_received",
                )
            },
            "span_attributes_added_by_hooks": ["cache.hit", "cache.key"],
            "variant_without_hook_attributes": "variants/no_cache_hit/",
        },
        "connection_pooling": {
            "no_pool_route": "/reports/daily",
            "service": "shop",
            "connections_opened_per_request": 1,
            "connections_opened_by_route": shop["counts"].get("connections_opened_by_reports", 0),
            "connect_ms": pct(connect_ms),
            "server_connections_expected": (
                shop["counts"].get("connections_opened_by_reports", 0)
                + shop["counts"].get("pool_connections_num", 0)
                + inv["counts"].get("pool_connections_num", 0)
            ),
            "pooled": {
                "shop": {
                    "min_size": 4,
                    "max_size": 10,
                    "connections_opened": shop["counts"].get("pool_connections_num"),
                },
                "inventory": {
                    "min_size": 2,
                    "max_size": 8,
                    "connections_opened": inv["counts"].get("pool_connections_num"),
                },
            },
        },
        "cross_service": {
            "caller": {"service": "shop", "route": "/checkout/<int:order_id>"},
            "callee": {"service": "inventory", "route": "/stock/<sku>"},
            "calls": sum(inv_calls.values()),
            "calls_by_status": inv_calls,
            "calls_per_checkout": pct(shop["lists"].get("inventory_calls_per_checkout", [])),
            "note": "a 404 from inventory marks shop's client span ERROR; inventory's server span stays UNSET",
        },
        "own_code": {
            "route": "/catalog/export",
            "service": "shop",
            "own_code_ms": pct(own),
            "response_bytes": pct(shop["lists"].get("catalog_export_body_bytes", [])),
            "what": "SHA-256 chains per product and a large indented JSON body, after one small query",
        },
        "errors": {
            "client_404_per_route": {r: v["status"].get("404", 0) for r, v in routes.items()},
            "inventory_404": inv_calls.get("404", 0),
        },
    }


if __name__ == "__main__":
    main()
