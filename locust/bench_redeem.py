#!/usr/bin/env python
"""Redemption benchmark: redemptions per second on one popular reward, through the real HTTP stack.

Against the running stack (`make up`: gunicorn on the private PostgreSQL/Redis) it
1. creates a merchant, one reward with --stock items (10,000) and --clients residents (50) with points and
   JWTs, straight through the ORM and the ledger services (not measured),
2. lets the --clients residents (threads, one keep-alive HTTP session each) redeem that reward behind a barrier,
   each `POST /api/v1/rewards/{id}/redeem` with a fresh Idempotency-Key, until it answers `reward_out_of_stock`,
3. checks the result (exactly --stock vouchers, stock 0, the hold equals the vouchers' points, ledger balanced,
   no drift) and reports redemptions/s beside ../shared/bench/redeem_floor.py (the same redemption as raw SQL,
   50 clients) measured in the same run on the same cluster, as a ratio.

    DATABASE_URL=... REDIS_URL=... python locust/bench_redeem.py --host http://127.0.0.1:8000 [--stock 10000]

Prints JSON lines; the detailed result is also written to .local/bench/redeem.json and the last line is the
summary line of /work/notes/BENCH_FORMAT.md (bench "redeem", floor "redeem_floor.py", target 0.8, the
PostgreSQL durability settings of the run).
"""

import argparse
import http.client
import json
import os
import resource
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "locust"))
import pg_cost  # noqa: E402  (beside this script)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")
COST = 10
TARGET_RATIO = 0.8  # issue 14: at least 0.8 of redeem_floor.py


def prepare(stock: int, clients: int) -> tuple[int, list[str]]:
    import django

    django.setup()
    from datetime import UTC, datetime, timedelta

    from django.contrib.auth.hashers import make_password
    from rest_framework_simplejwt.tokens import AccessToken

    from backend.accounts.models import User
    from backend.accounts.phones import mask_phone, phone_hash
    from backend.core.seeding import SEEDERS
    from backend.ledger.services import ActionCredit, action_credits_post_bulk
    from rewards.catalogue import merchant_create, reward_create

    for _, seeder in SEEDERS:
        seeder()
    run = uuid.uuid4().hex[:6]
    merchant = merchant_create(name_zh=f"bench-{run}", district="370202")
    reward = reward_create(
        merchant=merchant, title_zh="热门奖励", points_cost=COST, stock=stock, voucher_validity_days=30
    )
    digits = f"{int(run, 16) % 1000:03d}"
    users = User.objects.bulk_create(
        [
            User(
                phone_hash=phone_hash(f"+86151{digits}{i:05d}"),
                phone_masked=mask_phone(f"+86151{digits}{i:05d}"),
                display_name=f"bench{i}",
                district_id="370202",
                password=make_password(None),
            )
            for i in range(clients)
        ]
    )
    now = datetime.now(UTC)
    action_credits_post_bulk(
        credits=[
            ActionCredit(
                idempotency_key=f"bench-redeem:{run}:{u.pk}",
                resident_id=u.pk,
                methodology="metro_ride",
                grams=0,
                points=COST * stock,  # each resident could take the whole stock
                reason="bench",
                source_type="bench",
                source_id=u.pk,
                effective_at=now,
            )
            for u in users
        ]
    )
    tokens = []
    for u in users:  # the stack's access tokens live 5 minutes; a slow run on a busy machine may take longer
        token = AccessToken.for_user(u)
        token.set_exp(lifetime=timedelta(hours=3))
        tokens.append(str(token))
    return reward.pk, tokens


CONNECTION_ATTEMPTS = 5


class LeanClient:
    """One keep-alive HTTP/1.1 connection (http.client): the client shares the 2 cores with the server it measures,
    and `requests` spent ~1.2 ms of CPU per redemption there (twice redeem_floor.py's whole client)."""

    def __init__(self, host: str, token: str):
        parsed = urlsplit(host)
        self.address = (parsed.hostname, parsed.port or 80)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.conn = None

    def post(self, path: str, key: str) -> tuple[int, bytes]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(*self.address, timeout=60)
        try:
            self.conn.request("POST", path, body=b"{}", headers={**self.headers, "Idempotency-Key": key})
            response = self.conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = None
            raise


def post_retrying(client: LeanClient, path: str, key: str, retries: list) -> tuple[int, bytes] | None:
    """POST one redemption; when the keep-alive connection is reset or refused (gunicorn recycles idle or
    overloaded connections), send the SAME request with the SAME Idempotency-Key again on a fresh connection:
    the idempotency contract makes that safe (a redemption that did commit answers its voucher, marked
    `Idempotent-Replayed`), so a dropped connection neither loses nor doubles a redemption. None after
    CONNECTION_ATTEMPTS failures."""
    for attempt in range(CONNECTION_ATTEMPTS):
        try:
            return client.post(path, key)
        except (OSError, http.client.HTTPException):
            retries.append(key)
            time.sleep(0.05 * (attempt + 1))
    return None


def client(
    host: str, reward_id: int, token: str, barrier, counts: list, errors: list, latencies: list, i: int, retries: list
) -> None:
    http_client = LeanClient(host, token)
    path = f"/api/v1/rewards/{reward_id}/redeem"
    done, mine = 0, []
    barrier.wait()
    while True:
        started = time.perf_counter()
        response = post_retrying(http_client, path, uuid.uuid4().hex, retries)
        if response is None:  # the connection kept failing: an error, not a hang
            errors.append("connection_failed")
            break
        status, body = response
        if status == 201:
            mine.append(time.perf_counter() - started)
            done += 1
            continue
        code = json.loads(body)["errors"][0]["code"] if body[:1] == b"{" else status
        if code == "reward_out_of_stock":
            break
        errors.append(code)
        if len(errors) > 100:  # something is wrong: stop every client rather than hammer on
            break
    counts[i] = done
    latencies.extend(mine)


def check(reward_id: int) -> dict:
    from django.db.models import Sum

    from backend.ledger.models import Posting
    from backend.ledger.selectors import balance_drift, unbalanced_transactions
    from rewards.models import Reward, Voucher

    vouchers = Voucher.objects.filter(reward_id=reward_id)
    hold = Posting.objects.filter(account__key="system:redemption_hold").aggregate(s=Sum("amount"))["s"] or 0
    issued = Voucher.objects.filter(status="issued").aggregate(s=Sum("points_cost"))["s"] or 0
    return {
        "stock_left": Reward.objects.get(pk=reward_id).stock,
        "vouchers": vouchers.count(),
        "hold_equals_issued": hold == issued,
        "unbalanced": unbalanced_transactions(),
        "drift": len(balance_drift()[1]),
    }


def redeem_floor(dsn: str, stock: int, clients: int) -> dict | None:
    script = Path(os.environ.get("REDEEM_FLOOR", ROOT.parent / "shared" / "bench" / "redeem_floor.py"))
    if not script.exists():
        return None
    out = subprocess.run(
        [sys.executable, str(script), dsn, "--stock", str(stock), "--clients", str(clients)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return lines[-1] if lines else None


def database_dsn() -> str:
    from django.db import connection

    s = connection.settings_dict
    return f"postgres://{s['USER']}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


def checkpoint(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def fsync_setting() -> str:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SHOW fsync")
        fsync = cur.fetchone()[0]
        cur.execute("SHOW synchronous_commit")
        sync = cur.fetchone()[0]
        cur.execute("SHOW full_page_writes")
        return f"fsync={fsync}, synchronous_commit={sync}, full_page_writes={cur.fetchone()[0]}"


def percentile_ms(latencies: list[float], q: float) -> float | None:
    if not latencies:
        return None
    ordered = sorted(latencies)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default=os.environ.get("BENCH_HOST", "http://127.0.0.1:8000"))
    ap.add_argument("--stock", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--skip-floor", action="store_true")
    a = ap.parse_args()
    reward_id, tokens = prepare(a.stock, a.clients)
    print(json.dumps({"prepared": {"reward": reward_id, "stock": a.stock, "residents": a.clients}}), flush=True)
    barrier = threading.Barrier(a.clients + 1)
    counts, errors, latencies, retries = [0] * a.clients, [], [], []
    threads = [
        threading.Thread(
            target=client,
            args=(a.host, reward_id, tokens[i], barrier, counts, errors, latencies, i, retries),
        )
        for i in range(a.clients)
    ]
    dsn = database_dsn()
    checkpoint(dsn)  # the preparation's dirty pages are not the redemptions' cost
    with_statements = pg_cost.statements_reset(dsn)
    for t in threads:
        t.start()
    pg_before = pg_cost.snapshot(dsn)
    web_pid_file = ROOT / ".local" / "run" / "gunicorn.pid"
    web_before, client_before = pg_cost.process_tree_cpu_s(web_pid_file), time.process_time()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    pg_product = pg_cost.per_op(pg_before, pg_cost.snapshot(dsn), sum(counts))
    web_after, client_cpu_s = pg_cost.process_tree_cpu_s(web_pid_file), time.process_time() - client_before
    if pg_product is not None:  # the whole machine's CPU per redemption, by side
        pg_product["client_cpu_ms_per_op"] = round(client_cpu_s * 1000 / max(sum(counts), 1), 2)
        if web_before is not None and web_after is not None:
            pg_product["web_cpu_ms_per_op"] = round((web_after - web_before) * 1000 / max(sum(counts), 1), 2)
    statements = pg_cost.statements_top(dsn, sum(counts)) if with_statements else None
    redeemed = sum(counts)
    summary = {
        "benchmark": "redeem",
        "clients": a.clients,
        "stock": a.stock,
        "redemptions": redeemed,
        "seconds": round(wall, 2),
        "redemptions_per_s": round(redeemed / wall, 1),
        "p50_ms": percentile_ms(latencies, 0.50),
        "p99_ms": percentile_ms(latencies, 0.99),
        "errors": len(errors),
        "connection_retries": len(retries),
        # Fairness: redemptions per client (a client on a crowded worker waits longer: the p99)
        "per_client_min_max": [min(counts), max(counts)],
        "web": {k: os.environ[k] for k in ("WEB_CONCURRENCY", "GUNICORN_THREADS") if k in os.environ},
        "postgres": fsync_setting(),
        "check": check(reward_id),
        "postgres_cost": pg_product,
    }
    if statements:
        print(json.dumps({"pg_stat_statements_per_redemption": statements}), flush=True)
    print(json.dumps(summary), flush=True)
    if not a.skip_floor:
        floor_before, children_before = pg_cost.snapshot(dsn), resource.getrusage(resource.RUSAGE_CHILDREN)
        floor = redeem_floor(dsn, a.stock, a.clients)
        if floor:
            floor["postgres_cost"] = cost = pg_cost.per_op(
                floor_before, pg_cost.snapshot_after_reap(dsn), floor["redemptions"]
            )
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            client_s = children.ru_utime + children.ru_stime - children_before.ru_utime - children_before.ru_stime
            if cost is not None:  # its client's CPU (setup and check included: an upper bound)
                cost["client_cpu_ms_per_op"] = round(client_s * 1000 / max(floor["redemptions"], 1), 2)
        summary["redeem_floor"] = floor
        if floor and floor.get("redemptions_per_s"):
            summary["ratio_to_floor"] = round(summary["redemptions_per_s"] / floor["redemptions_per_s"], 3)
    out = ROOT / ".local" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "redeem.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary), flush=True)
    floor_per_s = (summary.get("redeem_floor") or {}).get("redemptions_per_s")
    # The one summary line of issue 17 (/work/notes/BENCH_FORMAT.md): infra/bench.sh collects it.
    print(
        json.dumps(
            {
                "summary": True,
                "bench": "redeem",
                "product_per_s": summary["redemptions_per_s"],
                "floor_name": "redeem_floor.py",
                "floor_per_s": floor_per_s,
                "ratio": summary.get("ratio_to_floor"),
                "target": TARGET_RATIO,
                "p50_ms": summary["p50_ms"],
                "p99_ms": summary["p99_ms"],
                "p99_target_ms": None,
                "errors": len(errors),
                "postgres": summary["postgres"],
                "stock": a.stock,
                "clients": a.clients,
            }
        ),
        flush=True,
    )
    ok = (
        redeemed == a.stock
        and summary["check"]["stock_left"] == 0
        and summary["check"]["vouchers"] == a.stock
        and summary["check"]["hold_equals_issued"]
        and not summary["check"]["unbalanced"]
        and not errors
    )
    if not ok:
        print(json.dumps({"inconsistent": True, "first_errors": errors[:5]}), flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
