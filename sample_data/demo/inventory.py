"""The `inventory` service: called by shop's /checkout over HTTP (W3C traceparent).

Routes:
  GET /stock/<sku>    stock per warehouse (one indexed JOIN); a SKU without stock -> 404

Usage: python inventory.py CONFIG.json   (written by generate.py)
"""

from __future__ import annotations

import json
import sys

from common import Stats, execute, serve, setup_telemetry

SERVICE = "inventory"
CONFIG = json.load(open(sys.argv[1]))
OUTDIR = CONFIG["outdir"]

provider, exporter = setup_telemetry(SERVICE, OUTDIR)

from opentelemetry.instrumentation.flask import FlaskInstrumentor  # noqa: E402
from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor  # noqa: E402

PsycopgInstrumentor().instrument()

from flask import Flask, abort, jsonify  # noqa: E402
from psycopg_pool import ConnectionPool  # noqa: E402

DB = "inventory"
stats = Stats(SERVICE)
pool = ConnectionPool(
    CONFIG["inventory_dsn"],
    min_size=2,
    max_size=8,
    kwargs={"autocommit": True},
    open=True,
    name="inventory-pool",
)
pool.wait()

app = Flask(SERVICE)
FlaskInstrumentor().instrument_app(app)


@app.get("/stock/<sku>")
def stock(sku: str):
    with pool.connection() as conn, conn.cursor() as cur:
        rows = execute(
            stats,
            DB,
            cur,
            "SELECT w.name, w.city, s.quantity FROM stock s "
            "JOIN warehouses w ON w.id = s.warehouse_id WHERE s.sku = %s "
            "ORDER BY w.id",
            (sku,),
        ).fetchall()
    if not rows:
        abort(404)
    return jsonify(
        sku=sku,
        total=sum(r[2] for r in rows),
        warehouses=[{"name": r[0], "city": r[1], "quantity": r[2]} for r in rows],
    )


def _close():
    stats.counts["pool_connections_num"] = pool.get_stats().get("connections_num", 0)
    pool.close()


serve(app, CONFIG["inventory_port"], provider, exporter, stats, OUTDIR, on_shutdown=[_close])
