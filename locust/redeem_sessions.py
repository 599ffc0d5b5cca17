#!/usr/bin/env python
"""The product's redemption statement alone (rewards_redeem, rewards/migrations/0004), from raw psycopg threads: no
Django, no HTTP. Shows what the database itself takes per redemption on one popular reward as a function of the
sessions in flight, beside ../shared/bench/redeem_floor.py (whose 50 clients this mirrors). It steered the
redemption bench's gunicorn shape (infra/bench.sh): PostgreSQL's CPU per redemption grows with the sessions queued
on the hot row.

    DATABASE_URL=... REDIS_URL=... .venv/bin/python locust/redeem_sessions.py [--stock 5000] [--sessions 4 8 16 50]

Prints one JSON line per session count (redemptions/s, PostgreSQL CPU ms and WAL bytes per redemption).
"""

import argparse
import json
import os
import secrets
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "locust"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")
import bench_redeem  # noqa: E402  (beside this script)
import pg_cost  # noqa: E402


def measure(stock: int, sessions: int) -> dict:
    import psycopg
    from django.utils import timezone

    from backend.accounts.models import User
    from rewards.locking import REDEEM_SQL, limit_period_key
    from rewards.models import Reward

    reward_id, _tokens = bench_redeem.prepare(stock, sessions)
    residents = list(User.objects.order_by("-id").values_list("id", "district_id")[:sessions])
    dsn = bench_redeem.database_dsn()
    bench_redeem.checkpoint(dsn)
    barrier, counts = threading.Barrier(sessions + 1), [0] * sessions
    periods_of = (Reward.Period.DAY, Reward.Period.WEEK, Reward.Period.MONTH)

    def run(i: int) -> None:
        resident_id, district = residents[i]
        with psycopg.connect(dsn, autocommit=True) as conn:
            barrier.wait()
            while True:
                now = timezone.now()
                params = [
                    reward_id,
                    resident_id,
                    district,
                    uuid.uuid4().hex,
                    "0" * 64,
                    secrets.token_hex(8),
                    now,
                    [limit_period_key(p, now) for p in periods_of],
                ]
                try:
                    conn.execute(REDEEM_SQL, params, prepare=True).fetchone()
                except psycopg.errors.RaiseException as exc:
                    if exc.diag.message_primary == "reward_out_of_stock":
                        return
                    raise
                counts[i] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(sessions)]
    for t in threads:
        t.start()
    before = pg_cost.snapshot(dsn)
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    done = sum(counts)
    return {
        "sessions": sessions,
        "redemptions": done,
        "redemptions_per_s": round(done / wall, 1),
        "postgres_cost": pg_cost.per_op(before, pg_cost.snapshot(dsn), done),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stock", type=int, default=5000)
    ap.add_argument("--sessions", type=int, nargs="+", default=[4, 8, 16, 50])
    a = ap.parse_args()
    import django

    django.setup()
    for sessions in a.sessions:
        print(json.dumps(measure(a.stock, sessions)), flush=True)


if __name__ == "__main__":
    main()
