#!/usr/bin/env python
"""Ledger benchmark: postings per second for single posting (ledger_post, one transaction per call) and for
bulk posting (action_credits_post_bulk, 1,000 credits = 4,000 postings per call), through the Django services
against the database in DATABASE_URL (run via `make bench`, which uses the private PostgreSQL).

It writes into a fresh scratch database `<db>_bench` (created and dropped here), never the real one.
Prints one JSON line per mode, plus the SQL floor of ../shared/bench/sql_floor.py for comparison when found.

    DATABASE_URL=postgres://... python locust/bench_ledger.py [--single 2000] [--bulk 20000] [--batch 1000]
"""

import argparse
import json
import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--single", type=int, default=2000, help="single transactions to post")
    ap.add_argument("--bulk", type=int, default=20000, help="credits to post in bulk")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--residents", type=int, default=10000)
    args = ap.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        ap.error("set DATABASE_URL to a PostgreSQL database")
    from scratch_db import scratch_database

    with scratch_database(url):
        run(args)


def run(args) -> None:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.db import connection, transaction

    from backend.ledger.services import ActionCredit, Leg, action_credits_post_bulk, ledger_post

    rnd = random.Random(1)
    start = datetime.now(UTC) - timedelta(days=20)

    def credits(n: int, tag: str) -> list[ActionCredit]:
        out = []
        for i in range(n):
            grams = rnd.randint(100, 5000)
            out.append(
                ActionCredit(
                    idempotency_key=f"bench:{tag}:{i}",
                    resident_id=rnd.randint(1, args.residents),
                    methodology="bus_ride",
                    grams=grams,
                    points=grams // 10,
                    reason="Bus ride",
                    source_type="action",
                    source_id=i,
                    effective_at=start + timedelta(seconds=rnd.randint(0, 20 * 86400)),
                )
            )
        return out

    # Warm-up: create every resident's accounts once, as in steady state.
    warm = credits(args.residents, "warm")
    for i in range(0, len(warm), args.batch):
        action_credits_post_bulk(credits=warm[i : i + args.batch])
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE")

    batches = credits(args.bulk, "bulk")
    t0 = time.perf_counter()
    for i in range(0, len(batches), args.batch):
        with transaction.atomic():
            action_credits_post_bulk(credits=batches[i : i + args.batch])
    bulk_s = time.perf_counter() - t0
    postings = 4 * len(batches)
    print(
        json.dumps(
            {
                "mode": "bulk",
                "batch": args.batch,
                "transactions": len(batches),
                "postings": postings,
                "seconds": round(bulk_s, 2),
                "postings_per_s": round(postings / bulk_s),
                "credits_per_s": round(len(batches) / bulk_s),
            }
        ),
        flush=True,
    )

    t0 = time.perf_counter()
    for i in range(args.single):
        resident = rnd.randint(1, args.residents)
        ledger_post(
            kind="transfer",
            reason="bonus",
            source_type="bench",
            source_id=i,
            idempotency_key=f"bench:single:{i}",
            postings=[Leg("system:points_issuance", -5), Leg(f"resident:{resident}:points", 5)],
        )
    single_s = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "mode": "single",
                "transactions": args.single,
                "postings": 2 * args.single,
                "seconds": round(single_s, 2),
                "postings_per_s": round(2 * args.single / single_s),
                "transactions_per_s": round(args.single / single_s),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
