#!/usr/bin/env python
"""In-process profile of one redemption: database round trips, Redis commands and CPU milliseconds per
`POST /api/v1/rewards/{id}/redeem`, through the whole Django stack (middleware, JWT, throttles, the view,
the renderer) without gunicorn and HTTP. Steers the optimisation of the redemption path where the HTTP
benchmark (locust/bench_redeem.py) is too noisy on a shared machine.

    DATABASE_URL=... REDIS_URL=... python locust/profile_redeem.py [-n 300] [--cprofile 25]

Round trips count what reaches PostgreSQL, BEGIN/COMMIT and Django's connection health check included.
Prints one JSON line (and the cProfile top functions by cumulative time with --cprofile N).
"""

import argparse
import cProfile
import json
import os
import pstats
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=300, help="redemptions to time")
    ap.add_argument("--cprofile", type=int, default=0, help="print the top N functions (cumulative)")
    a = ap.parse_args()
    sys.argv = sys.argv[:1]
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_redeem", ROOT / "locust" / "bench_redeem.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    reward_id, tokens = bench.prepare(a.n + 20, 1)
    os.environ.setdefault("THROTTLE_USER", "100000/min")
    from django.core.cache import cache
    from django.test import Client

    client = Client(HTTP_AUTHORIZATION=f"Bearer {tokens[0]}")
    url = f"/api/v1/rewards/{reward_id}/redeem"

    def redeem():
        response = client.post(url, "{}", content_type="application/json", HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex)
        assert response.status_code == 201, response.content

    for _ in range(10):  # warm up: imports, connections, caches
        redeem()
    # Count what reaches the servers: psycopg statements (BEGIN/COMMIT and health checks included) and Redis
    # commands, by wrapping the lowest-level calls.
    counts = {"pg": 0, "redis": 0}
    import psycopg

    original_cursor_execute = psycopg.Cursor.execute
    original_pg_exec = psycopg.Connection._exec_command

    def count_exec_command(self, *args, **kw):
        counts["pg"] += 1
        return original_pg_exec(self, *args, **kw)

    def count_cursor_execute(self, *args, **kw):
        counts["pg"] += 1
        return original_cursor_execute(self, *args, **kw)

    psycopg.Connection._exec_command = count_exec_command
    psycopg.Cursor.execute = count_cursor_execute
    redis_client = cache.client.get_client(write=True)
    pool = redis_client.connection_pool
    conn_class = pool.connection_class
    original_send = conn_class.send_command

    def count_send(self, *args, **kw):
        counts["redis"] += 1
        return original_send(self, *args, **kw)

    conn_class.send_command = count_send
    redeem()
    one = dict(counts)
    psycopg.Connection._exec_command = original_pg_exec
    psycopg.Cursor.execute = original_cursor_execute
    conn_class.send_command = original_send

    sys.path.insert(0, str(ROOT / "locust"))
    import pg_cost
    from django.db import connection

    settings = connection.settings_dict
    dsn = f"postgres://{settings['USER']}@{settings['HOST']}:{settings['PORT']}/{settings['NAME']}"
    profiler = cProfile.Profile(time.process_time) if a.cprofile else None  # CPU time, not waits
    pg_before = pg_cost.snapshot(dsn)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    for _ in range(a.n):
        redeem()
    if profiler:
        profiler.disable()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    postgres = pg_cost.per_op(pg_before, pg_cost.snapshot(dsn), a.n)
    print(
        json.dumps(
            {
                "profile": "redeem",
                "pg_round_trips": one["pg"],
                "redis_commands": one["redis"],
                "cpu_ms_per_redemption": round(cpu * 1000 / a.n, 2),
                "wall_ms_per_redemption": round(wall * 1000 / a.n, 2),
                "redemptions": a.n,
                "postgres": postgres,
                "python_calls_per_redemption": (round(pstats.Stats(profiler).total_calls / a.n) if profiler else None),
            }
        ),
        flush=True,
    )
    if profiler:
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(a.cprofile)


if __name__ == "__main__":
    main()
