#!/usr/bin/env python
"""Statistics benchmark: the admin dashboard over a year of daily aggregates (target: under 300 ms), the
public city statistics uncached, and the aggregator's throughput (ledger credits aggregated per second).

It writes into a fresh scratch database `<db>_bench` (created and dropped here), never the real one.
Prints one JSON line per measurement.

    DATABASE_URL=postgres://... python locust/bench_stats.py [--districts 10] [--methodologies 11] [--credits 20000]
"""

import argparse
import json
import os
import random
import statistics
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
METHODS = [
    "bus_ride",
    "metro_ride",
    "bike_ride",
    "walk_steps",
    "nev_charging",
    "recycling",
    "kitchen_waste",
    "efficient_appliance",
    "paperless_bill",
    "reusable_cup",
    "reusable_bag",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methodologies", type=int, default=11)
    ap.add_argument("--credits", type=int, default=20000)
    ap.add_argument("--residents", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        ap.error("set DATABASE_URL to a PostgreSQL database")
    from scratch_db import scratch_database

    with scratch_database(url):
        run(args)


def monthly_recompute_from_daily() -> None:
    """The monthly cells the aggregator would keep beside the daily rows (residents: a stand-in)."""
    from django.db.models import Sum
    from django.db.models.functions import TruncMonth

    from backend.stats.models import DailyStat, MonthlyStat

    rows = (
        DailyStat.objects.annotate(m=TruncMonth("day"))
        .values("m", "district", "methodology")
        .annotate(g=Sum("grams"), a=Sum("actions"), r=Sum("active_residents"))
    )
    MonthlyStat.objects.bulk_create(
        [
            MonthlyStat(
                month=r["m"],
                district=r["district"],
                methodology=r["methodology"],
                grams=r["g"],
                actions=r["a"],
                residents=r["r"],
            )
            for r in rows
        ]
    )


def analyze() -> None:
    """Table statistics, as autovacuum would have gathered by now after a bulk load."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("ANALYZE")


def timed(fn, repeat: int) -> dict:
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    samples.sort()
    return {"median_ms": round(statistics.median(samples), 1), "max_ms": round(samples[-1], 1), "runs": repeat}


def run(args) -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.core.cache import cache
    from django.core.management import call_command

    settings.ALLOWED_HOSTS = ["*"]
    call_command("migrate", verbosity=0)
    from django.test import Client
    from django.utils import timezone

    from backend.accounts.models import District, User
    from backend.stats.aggregation import shanghai_day
    from backend.stats.models import DailyStat

    rnd = random.Random(1)
    codes = list(District.objects.values_list("code", flat=True))
    today = shanghai_day(timezone.now())
    methods = METHODS[: args.methodologies]
    rows = []
    for i in range(365):
        day = today - timedelta(days=i)
        for code in codes:
            for m in methods:
                for source in ("partner", "self_report"):
                    rows.append(
                        DailyStat(
                            day=day,
                            district=code,
                            methodology=m,
                            source=source,
                            grams=rnd.randint(0, 10**7),
                            actions=rnd.randint(0, 10**4),
                            active_residents=rnd.randint(0, 5000),
                        )
                    )
            rows.append(DailyStat(day=day, district=code, active_residents=rnd.randint(0, 9000), new_residents=5))
    DailyStat.objects.bulk_create(rows, batch_size=5000)
    monthly_recompute_from_daily()
    analyze()
    admin = User.objects.create(phone_hash=uuid.uuid4().hex, role="admin", is_superuser=True)
    client = Client()
    client.force_login(admin)
    assert client.get("/admin/stats/dashboard/").status_code == 200
    result = timed(lambda: client.get("/admin/stats/dashboard/"), args.repeat)
    print(json.dumps({"bench": "admin dashboard, a year of daily aggregates", "daily_rows": len(rows), **result}))

    def city():
        cache.clear()
        assert client.get("/api/v1/stats/city").status_code == 200

    print(json.dumps({"bench": "GET /api/v1/stats/city uncached", **timed(city, args.repeat)}))
    aggregate_throughput(args, rnd, codes)


def aggregate_throughput(args, rnd, codes) -> None:
    from django.utils import timezone

    from backend.accounts.models import User
    from backend.actions.models import Action
    from backend.ledger.services import ActionCredit, action_credits_post_bulk
    from backend.stats.aggregation import stats_aggregate

    stats_aggregate()  # start from a caught-up watermark
    users = User.objects.bulk_create(
        [User(phone_hash=uuid.uuid4().hex, district_id=rnd.choice(codes)) for _ in range(args.residents)]
    )
    now = timezone.now()
    for lo in range(0, args.credits, 1000):
        actions = Action.objects.bulk_create(
            [
                Action(
                    resident=rnd.choice(users),
                    methodology="bus_ride",
                    source="self_report",
                    occurred_at=now - timedelta(minutes=rnd.randint(1, 60 * 24 * 20)),
                    status="credited",
                )
                for _ in range(min(1000, args.credits - lo))
            ]
        )
        action_credits_post_bulk(
            credits=[
                ActionCredit(
                    idempotency_key=f"action:{a.id}",
                    resident_id=a.resident_id,
                    methodology="bus_ride",
                    grams=rnd.randint(100, 900),
                    points=10,
                    reason="bench",
                    source_type="action",
                    source_id=a.id,
                    effective_at=a.occurred_at,
                )
                for a in actions
            ]
        )
    analyze()
    t = time.perf_counter()
    result = stats_aggregate()
    seconds = time.perf_counter() - t
    print(
        json.dumps(
            {
                "bench": "stats_aggregate",
                "credits": args.credits,
                "days": result["days"],
                "seconds": round(seconds, 2),
                "credits_per_s": round(args.credits / seconds),
            }
        )
    )


if __name__ == "__main__":
    main()
