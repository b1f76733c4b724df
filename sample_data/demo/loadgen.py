"""Load generator: a fixed-seed plan of requests, then executed against shop.

The plan (built by plan_requests(seed, n)) mixes the routes below; product ids follow a
Zipf-like popularity (weight 1/rank**1.1 over a seeded permutation of the ids), and a few
percent of requests ask for ids, orders or emails that do not exist (404s).

run() executes the plan in three phases: sequential, then a burst of concurrent requests
(BURST_THREADS threads sharing the burst slice of the plan), then sequential again. Each
request is timed by the client (time.perf_counter around the whole request, body read
included) over keep-alive sessions (one per thread). The load generator is not instrumented:
each request starts a new trace at shop's server span.
"""

from __future__ import annotations

import bisect
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

N_PRODUCTS, N_ORDERS, N_CUSTOMERS = 5000, 20000, 300000

# (route as Flask/http.route spells it, weight)
MIX = [
    ("/products/<int:product_id>", 34),
    ("/customers/by-email", 8),
    ("/orders/<int:order_id>/items-slow", 10),
    ("/orders/<int:order_id>/items", 10),
    ("/checkout/<int:order_id>", 14),
    ("/reports/daily", 8),
    ("/catalog/export", 6),
]


def plan_requests(seed: int, n: int) -> list[dict]:
    rng = random.Random(seed)
    ids = list(range(1, N_PRODUCTS + 1))
    rng.shuffle(ids)  # rank -> product id
    cum, total = [], 0.0
    for rank in range(1, N_PRODUCTS + 1):
        total += 1.0 / rank**1.1
        cum.append(total)
    routes = [r for r, _ in MIX]
    weights = [w for _, w in MIX]
    plan = []
    for i in range(n):
        route = rng.choices(routes, weights)[0]
        if route == "/products/<int:product_id>":
            if rng.random() < 0.04:
                pid = N_PRODUCTS + rng.randint(1, 500)  # unknown -> 404
            else:
                pid = ids[bisect.bisect_left(cum, rng.random() * total)]
            path = f"/products/{pid}"
        elif route == "/customers/by-email":
            if rng.random() < 0.1:
                email = f"nobody{rng.randint(1, 10**6)}@example.org"  # -> 404
            else:
                email = f"user{rng.randint(1, N_CUSTOMERS)}@example.com"
            path = f"/customers/by-email?email={email}"
        elif route in (
            "/orders/<int:order_id>/items-slow",
            "/orders/<int:order_id>/items",
            "/checkout/<int:order_id>",
        ):
            oid = (
                N_ORDERS + rng.randint(1, 5000) if rng.random() < 0.04 else rng.randint(1, N_ORDERS)
            )
            path = route.replace("<int:order_id>", str(oid))
        elif route == "/reports/daily":
            day = 1 + rng.randrange(365)
            path = f"/reports/daily?day=2024-{_month_day(day)}"
        else:
            path = f"/catalog/export?category={rng.randint(1, 20)}"
        plan.append({"i": i, "route": route, "path": path})
    return plan


def _month_day(day_of_year: int) -> str:
    import datetime as dt

    d = dt.date(2024, 1, 1) + dt.timedelta(days=day_of_year - 1)
    return d.strftime("%m-%d")


def _do(session: requests.Session, base: str, item: dict, phase: str) -> dict:
    t_wall = time.time_ns()
    t0 = time.perf_counter()
    resp = session.get(base + item["path"], timeout=60)
    _ = resp.content
    ms = (time.perf_counter() - t0) * 1000.0
    return {
        **item,
        "phase": phase,
        "status": resp.status_code,
        "latency_ms": round(ms, 3),
        "start_ns": t_wall,
        "bytes": len(resp.content),
    }


def run(base: str, plan: list[dict], burst_start: int, burst_len: int, threads: int) -> list[dict]:
    results: list[dict] = []
    session = requests.Session()
    for item in plan[:burst_start]:
        results.append(_do(session, base, item, "sequential"))
    local = threading.local()

    def work(item):
        if not hasattr(local, "s"):
            local.s = requests.Session()
        return _do(local.s, base, item, "burst")

    with ThreadPoolExecutor(max_workers=threads) as pool:
        results.extend(pool.map(work, plan[burst_start : burst_start + burst_len]))
    for item in plan[burst_start + burst_len :]:
        results.append(_do(session, base, item, "sequential"))
    return results
