#!/usr/bin/env python
"""Capacity probe: CPU milliseconds per operation in each tier (gunicorn, Celery worker, PostgreSQL) for the three
workloads that size Qingdao's deployment: a resident's reads, partner ingestion and redemption. The input of the
capacity model that `make bench` prints (locust/benchkit.py; README "Capacity model").

Against the running stack (`make up`; `make bench` starts it on the durable cluster) it prepares residents with
partner-linked cards, points and JWTs, a partner and a reward (ORM and services, not measured), then for each
workload takes the CPU time of each tier's whole process tree before and after (utime + stime of every live
process, plus the reaped children's cutime + cstime: PostgreSQL backends that ended are counted too). Each worker
is warmed up first (a few seconds of reads and a few redemptions, not measured), then each tree's idle CPU per
second (beat, broker polling, background writers) is measured and subtracted from every phase. The phases:
- read: --read-clients threads reading wallet, ledger, actions, rewards and methodologies, --read-seconds in all:
  one phase per endpoint (a line each, "read:<path>"), summed as "read" (the five as an even mix);
- ingest: --actions bus rides in signed batches of 1,000 from 2 clients, until every one is processed; also
  database bytes and WAL bytes per action;
- redeem: --redemptions redemptions of one reward from --redeem-clients residents.
CPU per operation does not depend on how fast the load generator is; a machine oversubscribed many times over
(other jobs on the same cores) still inflates it through cache and scheduler effects: measure on a quiet one.

    python locust/bench_capacity.py --host http://127.0.0.1:8000 --pg-pid-file .local/bench-pg/pg/data/postmaster.pid

Prints one JSON line per workload: {"capacity_probe": "<workload>", "ops", "seconds", "web_cpu_s",
"worker_cpu_s", "pg_cpu_s", "errors", ...}.
"""

import argparse
import json
import os
import random
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")
TICKS = os.sysconf("SC_CLK_TCK")
READS = ["/api/v1/me/wallet", "/api/v1/me/ledger", "/api/v1/me/actions", "/api/v1/rewards", "/api/v1/methodologies"]


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of the process itself plus its reaped children) from /proc/<pid>/stat."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "; fields[0] is the state
    ppid = int(fields[1])
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return ppid, (utime + stime + cutime + cstime) / TICKS


def tree_cpu_seconds(roots: list[int]) -> float:
    """CPU seconds used so far by the process trees under `roots` (live processes and reaped children)."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (s := _stat(int(entry.name))):
            stats[int(entry.name)] = s
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo, seen = 0.0, [r for r in roots if r in stats], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += stats[pid][1]
        todo.extend(children.get(pid, []))
    return total


def read_pid(path: str) -> int:
    return int(Path(path).read_text().split()[0])


class Tiers:
    def __init__(self, args):
        self.roots = {
            "web": [read_pid(args.web_pid_file)],
            "worker": [read_pid(args.worker_pid_file)],
            "pg": [read_pid(args.pg_pid_file)],
        }
        self.idle = {"web": 0.0, "worker": 0.0, "pg": 0.0}

    def snapshot(self) -> dict:
        return {tier: tree_cpu_seconds(roots) for tier, roots in self.roots.items()} | {"t": time.perf_counter()}

    def measure_idle(self, seconds: float) -> dict:
        """CPU per second of each tree with no load (beat, the worker's broker polling, PostgreSQL's background
        writers): subtracted from every phase so a phase counts only the work it caused."""
        before = self.snapshot()
        time.sleep(seconds)
        after = self.snapshot()
        self.idle = {tier: (after[tier] - before[tier]) / (after["t"] - before["t"]) for tier in self.idle}
        return {f"{tier}_cpu_s_per_s": round(v, 4) for tier, v in self.idle.items()}

    def delta(self, before: dict, after: dict) -> dict:
        seconds = after["t"] - before["t"]
        out = {
            f"{tier}_cpu_s": round(max(after[tier] - before[tier] - self.idle[tier] * seconds, 0.0), 3)
            for tier in ("web", "worker", "pg")
        }
        return out | {"seconds": round(seconds, 2)}


def prepare(residents: int, with_tokens: int, stock: int):
    import django

    django.setup()
    from django.contrib.auth.hashers import make_password
    from django.db import transaction
    from django.utils import timezone
    from rest_framework_simplejwt.tokens import AccessToken

    from backend.accounts.models import Consent, User
    from backend.accounts.phones import mask_phone, phone_hash
    from backend.actions.models import SubjectBinding
    from backend.actions.subjects import subject_hash, subject_last4
    from backend.core.seeding import SEEDERS
    from backend.ledger.services import ActionCredit, action_credits_post_bulk
    from backend.partners.services import partner_create
    from rewards.catalogue import merchant_create, reward_create

    for _, seeder in SEEDERS:
        seeder()
    run = uuid.uuid4().hex[:6]
    digits = f"{int(run, 16) % 1000:03d}"
    partner, secret = partner_create(name=f"capacity-{run}", methodologies=["bus_ride"], subject_kinds=["transit_card"])
    cards = [f"CAP-{run}-{i}" for i in range(residents)]
    unusable = make_password(None)
    with transaction.atomic():
        users = User.objects.bulk_create(
            [
                User(
                    phone_hash=phone_hash(f"+86152{digits}{i:05d}"),
                    phone_masked=mask_phone(f"+86152{digits}{i:05d}"),
                    display_name=f"cap{i}",
                    district_id="370202",
                    password=unusable,
                )
                for i in range(residents)
            ],
            batch_size=2000,
        )
        Consent.objects.bulk_create([Consent(user=u, kind="partner_data", version="bench") for u in users])
        SubjectBinding.objects.bulk_create(
            [
                SubjectBinding(
                    resident=u,
                    partner=partner,
                    kind="transit_card",
                    identifier_hash=subject_hash("transit_card", c),
                    identifier_last4=subject_last4(c),
                )
                for u, c in zip(users, cards, strict=True)
            ],
            batch_size=2000,
        )
    now = timezone.now()
    action_credits_post_bulk(
        credits=[
            ActionCredit(
                idempotency_key=f"capacity:{run}:{u.pk}",
                resident_id=u.pk,
                methodology="metro_ride",
                grams=0,
                points=100_000,
                reason="capacity probe",
                source_type="bench",
                source_id=u.pk,
                effective_at=now,
            )
            for u in users[:with_tokens]
        ]
    )
    merchant = merchant_create(name_zh=f"capacity-{run}", district="370202")
    reward = reward_create(merchant=merchant, title_zh="容量奖励", points_cost=10, stock=stock)
    tokens = []
    for u in users[:with_tokens]:
        token = AccessToken.for_user(u)
        token.set_exp(lifetime=timedelta(hours=3))
        tokens.append(str(token))
    return partner.pk, secret, cards, tokens, reward.pk


def in_threads(n: int, target) -> None:
    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def probe_reads(host: str, tokens: list[str], clients: int, seconds: float, paths: list[str]) -> dict:
    import requests

    counts, errors = [0] * clients, [0] * clients
    deadline = time.perf_counter() + seconds

    def client(i: int) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {tokens[i % len(tokens)]}"
        while time.perf_counter() < deadline:
            response = session.get(host + paths[(counts[i] + i) % len(paths)], timeout=30)
            counts[i] += 1
            errors[i] += response.status_code != 200

    in_threads(clients, client)
    return {"ops": sum(counts), "errors": sum(errors)}


def probe_each_read(tiers, host: str, tokens: list[str], clients: int, seconds: float) -> list[dict]:
    """One phase per endpoint (CPU per request of each), then "read": the five as an even mix."""
    out = []
    for path in READS:
        before = tiers.snapshot()
        result = probe_reads(host, tokens, clients, seconds / len(READS), [path])
        out.append({"capacity_probe": f"read:{path}", **result, **tiers.delta(before, tiers.snapshot())})
    mix = {"capacity_probe": "read", "endpoints": READS}
    for key in ("ops", "errors", "web_cpu_s", "worker_cpu_s", "pg_cpu_s", "seconds"):
        mix[key] = round(sum(r[key] for r in out), 3)
    return [*out, mix]


def db_position() -> tuple[int, str]:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT pg_database_size(current_database()), pg_current_wal_lsn()::text")
        return cur.fetchone()


def wal_bytes(lsn_before: str, lsn_after: str) -> int:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)", [lsn_after, lsn_before])
        return int(cur.fetchone()[0])


def probe_ingest(host: str, partner_id: int, secret: str, cards: list[str], actions: int) -> dict:
    import requests
    from django.db.models import Count, Q
    from django.utils import timezone
    from prepare import partner_headers

    from backend.actions.models import Action

    rnd, now = random.Random(7), timezone.now()
    rows = [
        {
            "external_id": f"cap-{i}-{uuid.uuid4().hex[:8]}",
            "methodology": "bus_ride",
            "subject": {"kind": "transit_card", "identifier": rnd.choice(cards)},
            "occurred_at": (now - timedelta(seconds=rnd.randint(600, 6 * 86400))).isoformat(),
            "data": {"distance_km": str(km := round(rnd.uniform(0.5, 30), 2)), "duration_s": int(km / 20 * 3600) + 60},
        }
        for i in range(actions)
    ]
    bodies = [json.dumps({"actions": rows[i : i + 1000]}).encode() for i in range(0, actions, 1000)]
    errors = []

    def client(i: int) -> None:
        session = requests.Session()
        for body in bodies[i::2]:
            headers = partner_headers(partner_id, secret, body)
            response = session.post(f"{host}/api/v1/partner/actions", data=body, headers=headers, timeout=120)
            if response.status_code != 202:
                errors.append(response.status_code)

    in_threads(2, client)
    deadline = time.time() + 1800
    while time.time() < deadline:
        row = Action.objects.filter(partner_id=partner_id).aggregate(
            n=Count("id"), waiting=Count("id", filter=Q(status="received"))
        )
        if row["n"] >= actions and not row["waiting"]:
            break
        time.sleep(0.5)
    statuses = dict(Action.objects.filter(partner_id=partner_id).values_list("status").annotate(n=Count("id")))
    return {"ops": actions, "errors": len(errors), "statuses": statuses}


def probe_redeem(host: str, tokens: list[str], reward_id: int, clients: int, redemptions: int) -> dict:
    import requests

    left = [redemptions]
    lock = threading.Lock()
    done, errors = [0] * clients, []

    def client(i: int) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {tokens[i % len(tokens)]}"
        while True:
            with lock:
                if left[0] <= 0:
                    return
                left[0] -= 1
            response = session.post(
                f"{host}/api/v1/rewards/{reward_id}/redeem",
                json={},
                headers={"Idempotency-Key": uuid.uuid4().hex},
                timeout=60,
            )
            if response.status_code == 201:
                done[i] += 1
            else:
                errors.append(response.status_code)

    in_threads(clients, client)
    return {"ops": sum(done), "errors": len(errors)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default=os.environ.get("BENCH_HOST", "http://127.0.0.1:8000"))
    ap.add_argument("--web-pid-file", default=str(ROOT / ".local/run/gunicorn.pid"))
    ap.add_argument("--worker-pid-file", default=str(ROOT / ".local/run/worker.pid"))
    ap.add_argument("--pg-pid-file", required=True, help="postmaster.pid of the cluster behind DATABASE_URL")
    ap.add_argument("--residents", type=int, default=5000)
    ap.add_argument("--read-clients", type=int, default=8)
    ap.add_argument("--read-seconds", type=float, default=20)
    ap.add_argument("--actions", type=int, default=10_000)
    ap.add_argument("--redemptions", type=int, default=600)
    ap.add_argument("--redeem-clients", type=int, default=16)
    ap.add_argument("--idle-seconds", type=float, default=5, help="idle baseline, subtracted from every phase")
    a = ap.parse_args()
    tiers = Tiers(a)
    partner_id, secret, cards, tokens, reward_id = prepare(a.residents, max(a.read_clients, a.redeem_clients), 10**6)
    print(json.dumps({"prepared": {"residents": a.residents, "tokens": len(tokens)}}), flush=True)

    # Warm-up, not measured: each gunicorn worker's first requests import and compile what it serves.
    probe_reads(a.host, tokens, a.read_clients, 3, READS)
    probe_redeem(a.host, tokens, reward_id, a.redeem_clients, 4 * a.redeem_clients)
    print(json.dumps({"idle_cpu": tiers.measure_idle(a.idle_seconds)}), flush=True)
    for line in probe_each_read(tiers, a.host, tokens, a.read_clients, a.read_seconds):
        print(json.dumps(line), flush=True)

    size0, lsn0 = db_position()
    before = tiers.snapshot()
    result = probe_ingest(a.host, partner_id, secret, cards, a.actions)
    cpu = tiers.delta(before, tiers.snapshot())
    size1, lsn1 = db_position()
    result["db_bytes_per_op"] = round((size1 - size0) / a.actions)
    result["wal_bytes_per_op"] = round(wal_bytes(lsn0, lsn1) / a.actions)
    print(json.dumps({"capacity_probe": "ingest", **result, **cpu}), flush=True)

    before = tiers.snapshot()
    result = probe_redeem(a.host, tokens, reward_id, a.redeem_clients, a.redemptions)
    print(json.dumps({"capacity_probe": "redeem", **result, **tiers.delta(before, tiers.snapshot())}), flush=True)


if __name__ == "__main__":
    main()
