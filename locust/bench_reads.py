#!/usr/bin/env python
"""Read benchmark (issue 17): a resident's reads against /healthz on the same gunicorn, in the same run.

Against the running stack (`PORT=8033 infra/stack.sh up` on a durable cluster) it
1. prepares residents with realistic data through the services (not measured): a partner-linked transit card,
   --actions bus rides over the last two months ingested and processed (credited, some capped), a merchant with
   --rewards rewards and a few redemptions (vouchers, points spends and their lots), and long-lived JWTs;
2. measures each read endpoint with `wrk` (C, 2 threads, --connections keep-alive connections, installed from
   Debian when missing), each right after a /healthz run of the same length (the floor: same gunicorn, same
   middleware, no authentication, no query), a fresh resident per endpoint so the per-user throttle (the
   stack's THROTTLE_USER) never trips;
3. prints one BENCH_FORMAT summary line per endpoint (floor "/healthz", target ratio 0.5, p99 target 50 ms).

    DATABASE_URL=... REDIS_URL=... .venv/bin/python locust/bench_reads.py --host http://127.0.0.1:8033

`--profile` measures in process instead (no server), through the whole Django stack (middleware, authentication,
throttles, view, renderer): per endpoint CPU ms per request, Python function calls per request (a proxy for CPU
that a busy shared machine does not disturb), SQL queries and Redis commands per request; `--cprofile N` adds the
N most expensive functions. These are the figures to steer by on a shared machine.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")

ENDPOINTS = [
    "/api/v1/me/wallet",
    "/api/v1/me/ledger",
    "/api/v1/me/actions",
    "/api/v1/methodologies",
    "/api/v1/rewards",
]
FLOOR = "/healthz"
TARGET_RATIO = 0.5
P99_TARGET_MS = 50.0


def setup_django():
    import django

    django.setup()


def prepare(*, residents: int, actions: int, rewards: int, redemptions: int) -> list[dict]:
    """`residents` residents with the same realistic history each; returns [{"id", "token"}]."""
    import random

    from django.contrib.auth.hashers import make_password
    from django.db import transaction
    from django.utils import timezone
    from rest_framework_simplejwt.tokens import AccessToken

    from backend.accounts.models import Consent, User
    from backend.accounts.phones import mask_phone, phone_hash
    from backend.actions.models import SubjectBinding
    from backend.actions.services import actions_ingest, batch_process
    from backend.actions.subjects import subject_hash, subject_last4
    from backend.core.seeding import SEEDERS
    from backend.ledger.services import ActionCredit, action_credits_post_bulk
    from backend.partners.services import partner_create
    from rewards.catalogue import merchant_create, reward_create
    from rewards.services import reward_redeem

    for _, seeder in SEEDERS:
        seeder()
    run = uuid.uuid4().hex[:6]
    digits = f"{int(run, 16) % 1000:03d}"
    partner, _secret = partner_create(
        name=f"bench-reads-{run}", methodologies=["bus_ride"], subject_kinds=["transit_card"]
    )
    merchant = merchant_create(name_zh=f"bench-reads-{run}", district="370202")
    catalogue = [
        reward_create(
            merchant=merchant,
            title_zh=f"奖励 {i}",
            points_cost=5 + i,
            stock=1000,
            voucher_validity_days=30,
        )
        for i in range(rewards)
    ]
    rnd = random.Random(17)
    now = timezone.now()
    out = []
    for r in range(residents):
        phone = f"+86152{digits}{r:05d}"
        card = f"BENCH-READS-{run}-{r}"
        with transaction.atomic():
            user = User.objects.create(
                phone_hash=phone_hash(phone),
                phone_masked=mask_phone(phone),
                display_name=f"reads{r}",
                district_id="370202",
                password=make_password(None),
            )
            Consent.objects.create(user=user, kind="partner_data", version="bench")
            SubjectBinding.objects.create(
                resident=user,
                partner=partner,
                kind="transit_card",
                identifier_hash=subject_hash("transit_card", card),
                identifier_last4=subject_last4(card),
            )
        items = []
        for i in range(actions):
            km = round(rnd.uniform(0.5, 30), 2)
            items.append(
                {
                    "external_id": f"reads-{run}-{r}-{i}",
                    "methodology": "bus_ride",
                    "subject": {"kind": "transit_card", "identifier": card},
                    "occurred_at": (now - timedelta(seconds=rnd.randint(600, 60 * 86400))).isoformat(),
                    "data": {"distance_km": str(km), "duration_s": int(km / rnd.uniform(12, 40) * 3600) + 60},
                }
            )
        for start in range(0, len(items), 1000):
            actions_ingest(partner=partner, nonce=uuid.uuid4().hex, items=items[start : start + 1000])
        from backend.actions.models import IngestBatch

        for batch_id in IngestBatch.objects.filter(partner=partner).values_list("id", flat=True):
            batch_process(batch_id=batch_id)  # the stack's worker may race us: processing is exactly-once
        # Enough points for the redemptions whatever the caps credited.
        action_credits_post_bulk(
            credits=[
                ActionCredit(
                    idempotency_key=f"bench-reads:{run}:{user.pk}",
                    resident_id=user.pk,
                    methodology="metro_ride",
                    grams=0,
                    points=1000,
                    reason="bench",
                    source_type="bench",
                    source_id=user.pk,
                    effective_at=now,
                )
            ]
        )
        for i in range(redemptions):
            reward_redeem(resident=user, reward_id=catalogue[i % len(catalogue)].pk, idempotency_key=f"r{run}{i}")
        token = AccessToken.for_user(user)
        token.set_exp(lifetime=timedelta(hours=3))  # the stack's access tokens live 5 minutes
        out.append({"id": user.pk, "token": str(token)})
    return out


# --------------------------------------------------------------------------------------------- in process


def redis_calls() -> int:
    from django.conf import settings

    if not settings.REDIS_URL:
        return 0
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return sum(v["calls"] for k, v in stats.items() if k not in ("cmdstat_info",))


def redis_round_trips(call) -> int:
    """Redis round trips made by `call()`: a pipeline is one, like a single command (both send one packet)."""
    from redis.connection import AbstractConnection

    sent = []
    original = AbstractConnection.send_packed_command

    def counting(self, *args, **kwargs):
        sent.append(1)
        return original(self, *args, **kwargs)

    AbstractConnection.send_packed_command = counting
    try:
        call()
    finally:
        AbstractConnection.send_packed_command = original
    return len(sent)


def profile(residents: list[dict], *, requests: int, top: int, only: str = "") -> list[dict]:
    """CPU ms per request (time.process_time), SQL queries and Redis commands per request, per endpoint,
    through the Django test client (the whole middleware stack and WSGI handler, no socket)."""
    import cProfile
    import pstats

    from django.db import connection
    from django.test import Client

    rows = []
    for path, resident in zip([FLOOR, *ENDPOINTS], [residents[0], *residents], strict=False):
        if only and only not in path:
            continue
        client = Client(HTTP_AUTHORIZATION=f"Bearer {resident['token']}")
        if path in (FLOOR, "/api/v1/methodologies"):
            client = Client()
        for _ in range(20):  # warm caches, connections, lazy imports
            response = client.get(path)
            assert response.status_code == 200, (path, response.status_code, response.content[:300])
        counted: list[str] = []

        def count(execute, sql, params, many, context, counted=counted):
            counted.append(sql)
            return execute(sql, params, many, context)

        with connection.execute_wrapper(count):
            client.get(path)
        idle = redis_calls()
        idle = redis_calls() - idle  # what reading the counters itself costs
        before_redis = redis_calls()
        client.get(path)
        redis_per_request = redis_calls() - before_redis - idle
        round_trips = redis_round_trips(lambda client=client, path=path: client.get(path))
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for _ in range(requests):
            client.get(path)
        cpu = (time.process_time() - cpu0) / requests * 1000
        wall = (time.perf_counter() - wall0) / requests * 1000
        # Python function calls per request: a proxy for CPU that a busy shared machine does not disturb.
        profiler = cProfile.Profile(time.process_time)  # CPU, not waits
        sampled = max(requests // 5, 10)
        profiler.enable()
        for _ in range(sampled):
            client.get(path)
        profiler.disable()
        stats = pstats.Stats(profiler)
        row = {
            "profile": path,
            "cpu_ms": round(cpu, 3),
            "wall_ms": round(wall, 3),
            "py_calls": round(stats.total_calls / sampled),
            "queries": len(counted),
            "redis_commands": redis_per_request,
            "redis_round_trips": round_trips,
            "bytes": len(response.content) if path == FLOOR else len(client.get(path).content),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
        if top:
            stats.sort_stats("cumulative").print_stats(top)
            stats.sort_stats("tottime").print_stats(top // 2)
    return rows


# --------------------------------------------------------------------------------------------------- HTTP


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk missing: installing it from Debian", file=sys.stderr)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env)
    return shutil.which("wrk") or "wrk"


UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(us|ms|s|m)", value).groups()
    return float(number) * UNITS_MS[unit]


def wrk(host: str, path: str, *, token: str | None, seconds: int, connections: int, threads: int) -> dict:
    cmd = [ensure_wrk(), "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency"]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    out = subprocess.run([*cmd, host + path], check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, socket.groups())) if socket else 0)
    return {"per_s": rps, "p99_ms": _ms(p99.group(1)) if p99 else None, "errors": errors}


def postgres_settings() -> str:
    from django.db import connection

    with connection.cursor() as cur:
        values = []
        for name in ("fsync", "synchronous_commit", "full_page_writes"):
            cur.execute(f"SHOW {name}")
            values.append(f"{name}={cur.fetchone()[0]}")
    return ", ".join(values)


def cpu_probe(web_pid_file: str, pg_pid_file: str):
    """A function giving (gunicorn tree, PostgreSQL tree) CPU seconds so far, or None without both pid files."""
    if not (web_pid_file and pg_pid_file and Path(web_pid_file).exists() and Path(pg_pid_file).exists()):
        return None
    sys.path.insert(0, str(ROOT / "locust"))
    from bench_capacity import read_pid, tree_cpu_seconds

    web, pg = read_pid(web_pid_file), read_pid(pg_pid_file)
    return lambda: (tree_cpu_seconds([web]), tree_cpu_seconds([pg]))


def measure(
    host: str, residents: list[dict], *, seconds: int, connections: int, threads: int, cpu=None, only: str = ""
) -> list[dict]:
    import requests

    postgres = postgres_settings()
    summaries = []
    for path, resident in zip(ENDPOINTS, residents, strict=False):
        if only and only not in path:
            continue
        token = None if path == "/api/v1/methodologies" else resident["token"]
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        check = requests.get(host + path, headers=headers, timeout=30)
        check.raise_for_status()
        wrk(host, path, token=token, seconds=1, connections=connections, threads=threads)  # warm every worker
        floor = wrk(host, FLOOR, token=None, seconds=seconds, connections=connections, threads=threads)
        before = cpu() if cpu else None
        product = wrk(host, path, token=token, seconds=seconds, connections=connections, threads=threads)
        after = cpu() if cpu else None
        summary = {
            "summary": True,
            "bench": f"read:{path}",
            "product_per_s": round(product["per_s"], 1),
            "floor_name": FLOOR,
            "floor_per_s": round(floor["per_s"], 1),
            "ratio": round(product["per_s"] / floor["per_s"], 3) if floor["per_s"] else 0.0,
            "target": TARGET_RATIO,
            "p99_ms": product["p99_ms"],
            "p99_target_ms": P99_TARGET_MS,
            "errors": product["errors"] + floor["errors"],
            "postgres": postgres,
            "floor_p99_ms": floor["p99_ms"],
            "connections": connections,
            "seconds": seconds,
            "response_bytes": len(check.content),
        }
        if cpu:  # CPU per request of each tier during the product's run (other load on the machine included)
            requests_done = max(product["per_s"] * seconds, 1)
            summary["web_cpu_ms"] = round((after[0] - before[0]) / requests_done * 1000, 3)
            summary["pg_cpu_ms"] = round((after[1] - before[1]) / requests_done * 1000, 3)
        summaries.append(summary)
        print(json.dumps(summary, ensure_ascii=False), flush=True)
    return summaries


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default=os.environ.get("BENCH_HOST", "http://127.0.0.1:8000"))
    ap.add_argument("--seconds", type=int, default=10, help="length of each wrk run")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--actions", type=int, default=300, help="bus rides per resident")
    ap.add_argument("--rewards", type=int, default=20)
    ap.add_argument("--redemptions", type=int, default=5)
    ap.add_argument("--profile", action="store_true", help="in process: CPU ms, queries, Redis commands")
    ap.add_argument("--requests", type=int, default=300, help="requests per endpoint with --profile")
    ap.add_argument("--cprofile", type=int, default=0, metavar="N", help="with --profile: the N top functions")
    ap.add_argument("--web-pid-file", default=str(ROOT / ".local/run/gunicorn.pid"), help="gunicorn CPU per request")
    ap.add_argument("--pg-pid-file", default="", help="postmaster.pid: PostgreSQL CPU per request")
    ap.add_argument("--only", default="", metavar="TEXT", help="only the paths containing TEXT")
    a = ap.parse_args()
    if a.profile:  # as the stack runs (infra/stack.sh): DEBUG's query log would be counted as the app's CPU
        os.environ.setdefault("DEBUG", "false")
    setup_django()
    started = time.perf_counter()
    residents = prepare(residents=len(ENDPOINTS), actions=a.actions, rewards=a.rewards, redemptions=a.redemptions)
    print(
        json.dumps(
            {
                "prepared": {
                    "residents": len(residents),
                    "actions_each": a.actions,
                    "rewards": a.rewards,
                    "seconds": round(time.perf_counter() - started, 1),
                }
            }
        ),
        flush=True,
    )
    if a.profile:
        profile(residents, requests=a.requests, top=a.cprofile, only=a.only)
        return
    out = ROOT / ".local" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    cpu = cpu_probe(a.web_pid_file, a.pg_pid_file)
    summaries = measure(
        a.host, residents, seconds=a.seconds, connections=a.connections, threads=a.threads, cpu=cpu, only=a.only
    )
    (out / "reads.json").write_text(json.dumps(summaries, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
