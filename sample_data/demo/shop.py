"""The `shop` service: a Flask app instrumented with the OpenTelemetry SDK (flask, requests,
psycopg and redis instrumentations), on its own process and port.

Routes (each one a deliberate latency pattern; see sample_data/README.md):
  GET /products/<id>               cache-aside over Redis (GET product:<id>; on a miss SELECT and
                                   SETEX with a short TTL); unknown ids -> 404, nothing cached
  GET /customers/by-email?email=   WHERE on the unindexed customers.email: a Seq Scan of 300k rows
  GET /orders/<id>/items-slow      N+1: one query for the order's items, then one per item
  GET /orders/<id>/items           the same data with one JOIN
  GET /checkout/<id>               order + shipping method (the decoy: tiny table, Seq Scan is
                                   right) + HTTP calls to inventory GET /stock/<sku>
  GET /reports/daily?day=          opens a NEW database connection per request (no pool)
  GET /catalog/export?category=    one small query, then CPU work and a large JSON body (self time)
Everything else on the database uses a psycopg_pool.ConnectionPool.

Usage: python shop.py CONFIG.json   (written by generate.py)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sys

from common import (
    Stats,
    cache_request_hook,
    cache_response_hook,
    execute,
    now_ms,
    serve,
    setup_telemetry,
)

SERVICE = "shop"
CONFIG = json.load(open(sys.argv[1]))
OUTDIR = CONFIG["outdir"]

provider, exporter = setup_telemetry(SERVICE, OUTDIR)

from opentelemetry.instrumentation.flask import FlaskInstrumentor  # noqa: E402
from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor  # noqa: E402
from opentelemetry.instrumentation.redis import RedisInstrumentor  # noqa: E402
from opentelemetry.instrumentation.requests import RequestsInstrumentor  # noqa: E402

PsycopgInstrumentor().instrument()
RedisInstrumentor().instrument(request_hook=cache_request_hook, response_hook=cache_response_hook)
RequestsInstrumentor().instrument()

import psycopg  # noqa: E402
import redis  # noqa: E402
import requests  # noqa: E402
from flask import Flask, abort, jsonify, request  # noqa: E402
from psycopg_pool import ConnectionPool  # noqa: E402

DB = "shop"
DSN = CONFIG["shop_dsn"]
CACHE_TTL_S = CONFIG["cache_ttl_s"]
stats = Stats(SERVICE)

pool = ConnectionPool(
    DSN, min_size=4, max_size=10, kwargs={"autocommit": True}, open=True, name="shop-pool"
)
pool.wait()
cache = redis.Redis(host="127.0.0.1", port=CONFIG["redis_port"], db=0)
http = requests.Session()  # keep-alive towards inventory
INVENTORY = f"http://127.0.0.1:{CONFIG['inventory_port']}"

app = Flask(SERVICE)
FlaskInstrumentor().instrument_app(app)

PRODUCT_SQL = (
    "SELECT id, sku, name, price_cents, category_id, description FROM products WHERE id = %s"
)


@app.get("/products/<int:product_id>")
def product(product_id: int):
    key = f"product:{product_id}"
    cached = cache.get(key)
    if cached is not None:
        stats.cache_event("product:{id}", "hit")
        return app.response_class(cached, mimetype="application/json")
    stats.cache_event("product:{id}", "miss")
    with pool.connection() as conn, conn.cursor() as cur:
        row = execute(stats, DB, cur, PRODUCT_SQL, (product_id,)).fetchone()
    if row is None:
        stats.cache_event("product:{id}", "miss_not_found")
        abort(404)
    body = json.dumps(
        {
            "id": row[0],
            "sku": row[1],
            "name": row[2],
            "price_cents": row[3],
            "category_id": row[4],
            "description": row[5],
        }
    )
    cache.setex(key, CACHE_TTL_S, body)
    stats.cache_event("product:{id}", "set")
    return app.response_class(body, mimetype="application/json")


@app.get("/customers/by-email")
def customer_by_email():
    email = request.args.get("email", "")
    with pool.connection() as conn, conn.cursor() as cur:
        row = execute(
            stats,
            DB,
            cur,
            "SELECT id, email, full_name, country, created_at FROM customers WHERE email = %s",
            (email,),
        ).fetchone()
    if row is None:
        abort(404)
    return jsonify(
        id=row[0], email=row[1], full_name=row[2], country=row[3], created_at=row[4].isoformat()
    )


@app.get("/orders/<int:order_id>/items-slow")
def order_items_slow(order_id: int):
    """N+1: the list of items, then one product query per item (as a naive ORM would)."""
    with pool.connection() as conn, conn.cursor() as cur:
        items = execute(
            stats,
            DB,
            cur,
            "SELECT id, product_id, quantity, unit_price_cents FROM order_items "
            "WHERE order_id = %s ORDER BY id",
            (order_id,),
        ).fetchall()
        if not items:
            abort(404)
        out = []
        for item_id, product_id, quantity, unit_price in items:
            name, sku = execute(
                stats, DB, cur, "SELECT name, sku FROM products WHERE id = %s", (product_id,)
            ).fetchone()
            out.append(
                {
                    "item_id": item_id,
                    "product_id": product_id,
                    "sku": sku,
                    "name": name,
                    "quantity": quantity,
                    "unit_price_cents": unit_price,
                }
            )
    stats.add("nplus1_items_per_request", len(items))
    return jsonify(order_id=order_id, items=out)


@app.get("/orders/<int:order_id>/items")
def order_items_join(order_id: int):
    """The same response as /items-slow with one JOIN."""
    with pool.connection() as conn, conn.cursor() as cur:
        rows = execute(
            stats,
            DB,
            cur,
            "SELECT oi.id, oi.product_id, p.sku, p.name, oi.quantity, oi.unit_price_cents "
            "FROM order_items oi JOIN products p ON p.id = oi.product_id "
            "WHERE oi.order_id = %s ORDER BY oi.id",
            (order_id,),
        ).fetchall()
    if not rows:
        abort(404)
    stats.add("join_items_per_request", len(rows))
    out = [
        {
            "item_id": r[0],
            "product_id": r[1],
            "sku": r[2],
            "name": r[3],
            "quantity": r[4],
            "unit_price_cents": r[5],
        }
        for r in rows
    ]
    return jsonify(order_id=order_id, items=out)


@app.get("/checkout/<int:order_id>")
def checkout(order_id: int):
    with pool.connection() as conn, conn.cursor() as cur:
        order = execute(
            stats,
            DB,
            cur,
            "SELECT id, customer_id, shipping_code, total_cents FROM orders WHERE id = %s",
            (order_id,),
        ).fetchone()
        if order is None:
            abort(404)
        method = execute(
            stats,
            DB,
            cur,
            "SELECT id, name, price_cents, max_days FROM shipping_methods WHERE code = %s",
            (order[2],),
        ).fetchone()
        items = execute(
            stats,
            DB,
            cur,
            "SELECT p.sku, oi.quantity FROM order_items oi JOIN products p ON p.id = oi.product_id "
            "WHERE oi.order_id = %s ORDER BY oi.id LIMIT 3",
            (order_id,),
        ).fetchall()
    availability = []
    for sku, quantity in items:
        resp = http.get(f"{INVENTORY}/stock/{sku}", timeout=10)
        stats.count(f"inventory_calls_status_{resp.status_code}")
        if resp.status_code == 200:
            available = resp.json()["total"] >= quantity
        else:
            available = False
        availability.append({"sku": sku, "quantity": quantity, "available": available})
    stats.add("inventory_calls_per_checkout", len(items))
    return jsonify(
        order_id=order[0],
        customer_id=order[1],
        total_cents=order[3],
        shipping={"name": method[1], "price_cents": method[2], "max_days": method[3]},
        items=availability,
    )


@app.get("/reports/daily")
def daily_report():
    """Opens a new connection for every request instead of using the pool."""
    day = dt.date.fromisoformat(request.args.get("day", "2024-03-01"))
    t0 = now_ms()
    conn = psycopg.connect(DSN, autocommit=True)
    stats.add("reports_connect_ms", round(now_ms() - t0, 3))
    stats.count("connections_opened_by_reports")
    try:
        with conn.cursor() as cur:
            row = execute(
                stats,
                DB,
                cur,
                "SELECT count(*), coalesce(sum(total_cents), 0) FROM orders "
                "WHERE created_at >= %s AND created_at < %s",
                (day, day + dt.timedelta(days=1)),
            ).fetchone()
    finally:
        conn.close()
    return jsonify(day=day.isoformat(), orders=row[0], revenue_cents=int(row[1]))


@app.get("/catalog/export")
def catalog_export():
    """One small query, then own code: enrich every product and serialise a large document."""
    category = int(request.args.get("category", "1"))
    with pool.connection() as conn, conn.cursor() as cur:
        rows = execute(
            stats,
            DB,
            cur,
            "SELECT id, sku, name, price_cents, description FROM products "
            "WHERE category_id = %s ORDER BY id",
            (category,),
        ).fetchall()
    t0 = now_ms()
    products = []
    for pid, sku, name, price, description in rows:
        digest = description.encode()
        for _ in range(30):  # a content hash chain: stands in for pricing/formatting logic
            digest = hashlib.sha256(digest).digest()
        products.append(
            {
                "id": pid,
                "sku": sku,
                "name": name,
                "price": {"cents": price, "currency": "EUR", "display": f"{price / 100:.2f} EUR"},
                "etag": digest.hex(),
                "description": description,
                "variants": [
                    {"size": s, "sku": f"{sku}-{s}", "price_cents": price + i * 50}
                    for i, s in enumerate(("XS", "S", "M", "L", "XL", "XXL"))
                ],
            }
        )
    body = json.dumps(
        {"category": category, "count": len(products), "products": products}, indent=1
    )
    stats.add("catalog_export_own_code_ms", round(now_ms() - t0, 3))
    stats.add("catalog_export_body_bytes", len(body))
    return app.response_class(body, mimetype="application/json")


def _close():
    stats.counts["pool_connections_num"] = pool.get_stats().get("connections_num", 0)
    pool.close()


serve(app, CONFIG["shop_port"], provider, exporter, stats, OUTDIR, on_shutdown=[_close])
