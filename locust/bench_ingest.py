#!/usr/bin/env python
"""Ingestion benchmark: credited actions per second, from signed submission to `credited`.

Against the running stack (`make up`: gunicorn + Celery worker on the private PostgreSQL/Redis) it
1. creates a benchmark partner and N residents with partner-linked transit cards and consent (straight through
   the ORM: the link flow itself is exercised by the tests and locust/prepare.py),
2. submits --actions bus rides in signed batches of --batch from --clients threads over HTTP,
3. waits until none is left `received`, and reports actions/s from the first submission to the last
   processed action, next to pgbench's TPC-B figure and ../shared/bench/sql_floor.py (the database floor for
   what one credited action writes), both measured in the same run on the same cluster.

    DATABASE_URL=... REDIS_URL=... python locust/bench_ingest.py --host http://127.0.0.1:8000 [--actions 100000]

Prints JSON lines; the last one is the summary (also written to .local/bench/ingest.json), and draws
.local/bench/ingest.svg: stored vs processed actions over time, and the throughput beside the floor.
"""

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "locust"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")


def setup_django():
    import django

    django.setup()


def prepare(residents: int) -> tuple[int, str, list[str]]:
    """Partner + residents with consent and a bound card each, in bulk (no Argon2 per resident)."""
    from django.contrib.auth.hashers import make_password
    from django.db import transaction

    from backend.accounts.models import Consent, User
    from backend.accounts.phones import mask_phone, phone_hash
    from backend.actions.models import SubjectBinding
    from backend.actions.subjects import subject_hash, subject_last4
    from backend.core.seeding import SEEDERS
    from backend.partners.services import partner_create

    for _, seeder in SEEDERS:
        seeder()
    run = uuid.uuid4().hex[:6]
    partner, secret = partner_create(name=f"bench-{run}", methodologies=["bus_ride"], subject_kinds=["transit_card"])
    unusable = make_password(None)
    cards = [f"BENCH-{run}-{i}" for i in range(residents)]
    with transaction.atomic():
        users = User.objects.bulk_create(
            [
                User(
                    phone_hash=phone_hash(f"+86150{run_digits(run)}{i:05d}"),
                    phone_masked=mask_phone(f"+86150{run_digits(run)}{i:05d}"),
                    display_name=f"bench{i}",
                    password=unusable,
                )
                for i in range(residents)
            ],
            batch_size=2000,
        )
        Consent.objects.bulk_create(
            [Consent(user=u, kind="partner_data", version="bench") for u in users], batch_size=2000
        )
        SubjectBinding.objects.bulk_create(
            [
                SubjectBinding(  # as if each card had been linked through the partner (POST /partner/links)
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
    return partner.pk, secret, cards


def run_digits(run: str) -> str:
    return f"{int(run, 16) % 1000:03d}"


def make_batches(cards: list[str], actions: int, size: int) -> list[bytes]:
    from django.utils import timezone

    rnd = random.Random(42)
    now = timezone.now()
    rows = []
    for i in range(actions):
        km = round(rnd.uniform(0.5, 30), 2)
        duration = int(km / rnd.uniform(12, 40) * 3600) + 60
        at = now - timedelta(seconds=rnd.randint(600, 6 * 86400))
        rows.append(
            {
                "external_id": f"bench-{i}-{uuid.uuid4().hex[:8]}",
                "methodology": "bus_ride",
                "subject": {"kind": "transit_card", "identifier": rnd.choice(cards)},
                "occurred_at": at.isoformat(),
                "data": {"distance_km": str(km), "duration_s": duration},
            }
        )
    return [json.dumps({"actions": rows[i : i + size]}).encode() for i in range(0, actions, size)]


def submit_all(host: str, partner_id: int, secret: str, bodies: list[bytes], clients: int) -> tuple[float, list]:
    import requests
    from prepare import partner_headers

    queue = list(reversed(bodies))
    lock = threading.Lock()
    failures: list = []

    def worker():
        session = requests.Session()
        while True:
            with lock:
                if not queue:
                    return
                body = queue.pop()
            headers = partner_headers(partner_id, secret, body)
            response = session.post(f"{host}/api/v1/partner/actions", data=body, headers=headers, timeout=120)
            if response.status_code != 202:
                failures.append((response.status_code, response.text[:200]))

    started = time.time()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return started, failures


# The benchmark's own queries: cheap (stored = the batches' accepted counts; still `received` through the
# partial batch index that holds only received actions) and tagged, so the profile's statements leave them out.
PROGRESS = """/* bench-profile */
SELECT (SELECT coalesce(sum(accepted), 0) FROM actions_ingestbatch WHERE partner_id = %(p)s),
       (SELECT count(*) FROM actions_action a JOIN actions_ingestbatch b ON b.id = a.batch_id
         WHERE b.partner_id = %(p)s AND a.status = 'received')"""
FINAL = """/* bench-profile */
SELECT status, count(*), max(processed_at) FROM actions_action WHERE partner_id = %(p)s GROUP BY status"""


def _progress(conn, partner_id: int) -> tuple[int, int]:
    stored, received = conn.execute(PROGRESS, {"p": partner_id}).fetchone()
    return int(stored), int(stored) - int(received)


def sample(dsn: str, partner_id: int, started: float, timeline: list, stop: threading.Event) -> None:
    """Every half second: how many actions are stored and how many processed (for the chart)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        while not stop.is_set():
            stored, processed = _progress(conn, partner_id)
            timeline.append((time.time() - started, stored, processed))
            stop.wait(0.5)


def wait_processed(dsn: str, partner_id: int, expected: int, timeout: float) -> dict:
    import psycopg

    deadline = time.time() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.time() < deadline:
            stored, processed = _progress(conn, partner_id)
            if stored >= expected and processed >= stored:
                rows = conn.execute(FINAL, {"p": partner_id}).fetchall()
                counts = {status: n for status, n, _ in rows}
                if not counts.get("received"):
                    return {"counts": counts, "last_processed": max(last for *_, last in rows).timestamp()}
            time.sleep(0.5)
    raise TimeoutError(f"not processed within {timeout}s: {processed} of {stored}")


def svg_chart(timeline: list, summary: dict) -> str:
    """Stored vs processed actions over time, and the throughput next to the database's own figures."""
    width, height, pad = 760, 300, 50
    t_max = max((t for t, _, _ in timeline), default=1) or 1
    n_max = max((n for _, n, _ in timeline), default=1) or 1

    def path(index: int) -> str:
        points = [
            (pad + t / t_max * (width / 2 - 2 * pad), height - pad - row[index] / n_max * (height - 2 * pad))
            for t, *rest in timeline
            for row in [(t, *rest)]
        ]
        return " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(points))

    bars = [("product", summary.get("processed_per_s") or 0)]
    if summary.get("sql_floor"):
        bars.append(("sql floor x2", summary["sql_floor"]["actions_per_s"]))
    if summary.get("pgbench_tpcb_tps"):
        bars.append(("pgbench tps", summary["pgbench_tpcb_tps"]))
    b_max = max(v for _, v in bars) or 1
    bar_w = (width / 2 - pad) / max(len(bars), 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        f'font-size="11"><rect width="100%" height="100%" fill="white"/>',
        f'<text x="{pad}" y="20" font-size="13">Actions over time ({summary["actions"]:,} in '
        f"{summary['seconds_to_all_processed']} s)</text>",
        f'<path d="{path(1)}" fill="none" stroke="#888" stroke-width="2"/>',
        f'<path d="{path(2)}" fill="none" stroke="#2a7" stroke-width="2"/>',
        f'<text x="{pad}" y="{height - 15}">grey: stored (202), green: processed; x: 0-{t_max:.0f} s</text>',
        f'<text x="{width / 2 + 10}" y="20" font-size="13">Throughput per second</text>',
    ]
    for i, (label, value) in enumerate(bars):
        x = width / 2 + 10 + i * bar_w
        h = value / b_max * (height - 2 * pad)
        parts.append(
            f'<rect x="{x:.1f}" y="{height - pad - h:.1f}" width="{bar_w * 0.7:.1f}" height="{h:.1f}" '
            f'fill="{"#2a7" if i == 0 else "#69c"}"/>'
        )
        parts.append(f'<text x="{x:.1f}" y="{height - pad - h - 4:.1f}">{value:,.0f}</text>')
        parts.append(f'<text x="{x:.1f}" y="{height - pad + 14}">{label}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def pgbench_tps(dsn_parts: dict, seconds: int) -> float | None:
    """TPC-B-like pgbench on a scratch database of the same cluster."""
    pgbench = "/usr/lib/postgresql/15/bin/pgbench"
    if not Path(pgbench).exists():
        return None
    env = {**os.environ, "PGPASSWORD": dsn_parts.get("PASSWORD") or ""}
    base = ["-h", dsn_parts["HOST"], "-p", str(dsn_parts["PORT"]), "-U", dsn_parts["USER"]]
    subprocess.run(["/usr/lib/postgresql/15/bin/dropdb", *base, "--if-exists", "bench_pgbench"], env=env, check=True)
    subprocess.run(["/usr/lib/postgresql/15/bin/createdb", *base, "bench_pgbench"], env=env, check=True)
    subprocess.run([pgbench, *base, "-i", "-q", "-s", "10", "bench_pgbench"], env=env, check=True, capture_output=True)
    out = subprocess.run(
        [pgbench, *base, "-c", "2", "-j", "2", "-T", str(seconds), "bench_pgbench"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    subprocess.run(["/usr/lib/postgresql/15/bin/dropdb", *base, "bench_pgbench"], env=env, check=True)
    for line in out.splitlines():
        if line.startswith("tps") and "without initial connection time" in line:
            return round(float(line.split("=")[1].split()[0]), 1)
    return None


def sql_floor(dsn: str, actions: int) -> dict | None:
    """../shared/bench/sql_floor.py with 2 clients (the issue's floor), and the WAL it writes per action
    (measured around the whole run, its setup of 20,000 accounts included: a slight overcount)."""
    from ingest_profile import wal_bytes

    script = ROOT.parent / "shared" / "bench" / "sql_floor.py"
    if not script.exists():
        return None
    wal_before = wal_bytes(dsn)
    out = subprocess.run(
        [sys.executable, str(script), dsn, "--actions", str(actions), "--clients", "2"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    floor = [json.loads(line) for line in out.splitlines() if line.startswith("{")][-1]
    floor["wal_bytes_per_action"] = round((wal_bytes(dsn) - wal_before) / max(floor["actions"], 1))
    return floor


def postgres_settings(connection) -> str:
    with connection.cursor() as cursor:
        values = []
        for name in ("fsync", "synchronous_commit", "full_page_writes"):
            cursor.execute(f"SHOW {name}")
            values.append(f"{name}={cursor.fetchone()[0]}")
    return ", ".join(values)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default=os.environ.get("BENCH_HOST", "http://127.0.0.1:8000"))
    ap.add_argument("--actions", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--residents", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--floor-actions", type=int, default=50_000)
    ap.add_argument("--pgbench-seconds", type=int, default=20, help="0 leaves pgbench out")
    ap.add_argument("--skip-reference", action="store_true", help="skip pgbench and sql_floor")
    a = ap.parse_args()
    setup_django()
    from django.db import connection
    from ingest_profile import cpu_delta, cpu_snapshot, db_delta, db_snapshot

    settings = connection.settings_dict
    dsn = f"postgres://{settings['USER']}@{settings['HOST']}:{settings['PORT']}/{settings['NAME']}"
    partner_id, secret, cards = prepare(a.residents)
    bodies = make_batches(cards, a.actions, a.batch)
    print(json.dumps({"prepared": {"residents": a.residents, "batches": len(bodies)}}), flush=True)
    timeline: list = []
    stop = threading.Event()
    db_before, cpu_before = db_snapshot(dsn), cpu_snapshot(ROOT)
    sampler = threading.Thread(target=sample, args=(dsn, partner_id, time.time(), timeline, stop))
    sampler.start()
    started, failures = submit_all(a.host, partner_id, secret, bodies, a.clients)
    submitted = time.time()
    result = wait_processed(dsn, partner_id, a.actions, timeout=3600)
    stop.set()
    sampler.join()
    cpu_after, db_after = cpu_snapshot(ROOT), db_snapshot(dsn)
    wall = result["last_processed"] - started
    counts = result["counts"]
    processed = sum(counts.values())
    summary = {
        "benchmark": "ingest",
        "actions": a.actions,
        "batch": a.batch,
        "clients": a.clients,
        "failures": len(failures),
        "submit_seconds": round(submitted - started, 2),
        "seconds_to_all_processed": round(wall, 2),
        "processed_per_s": round(processed / wall),
        "credited": counts.get("credited", 0),
        "credited_per_s": round(counts.get("credited", 0) / wall),
        "statuses": counts,
        # Measured from outside between the first submission and the last processed action (the sampler's
        # own count queries are in the rows read, not in the writes).
        "profile": {
            **db_delta(db_before, db_after, processed, len(bodies)),
            **cpu_delta(cpu_before, cpu_after, processed),
        },
    }
    print(json.dumps(summary), flush=True)
    if not a.skip_reference:
        if a.pgbench_seconds:
            summary["pgbench_tpcb_tps"] = pgbench_tps(settings, a.pgbench_seconds)
        summary["sql_floor"] = sql_floor(dsn, a.floor_actions)
        if summary["sql_floor"]:
            summary["ratio_to_sql_floor"] = round(summary["processed_per_s"] / summary["sql_floor"]["actions_per_s"], 3)
    out = ROOT / ".local" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "ingest.json").write_text(json.dumps(summary, indent=2))
    (out / "ingest.svg").write_text(svg_chart(timeline, summary))
    summary["chart"] = str(out / "ingest.svg")
    print(json.dumps(summary), flush=True)
    floor = summary.get("sql_floor") or {}
    # The one line infra/bench.sh collects (format: /work/notes/BENCH_FORMAT.md).
    print(
        json.dumps(
            {
                "summary": True,
                "bench": "ingest",
                "product_per_s": float(summary["processed_per_s"]),
                "floor_name": "sql_floor.py --clients 2",
                "floor_per_s": float(floor["actions_per_s"]) if floor else None,
                "ratio": summary.get("ratio_to_sql_floor"),
                "target": 0.35,
                "p99_ms": None,
                "p99_target_ms": None,
                "errors": len(failures),
                "postgres": postgres_settings(connection),
                "wal_bytes_per_action": summary["profile"]["wal_bytes_per_action"],
                "floor_wal_bytes_per_action": floor.get("wal_bytes_per_action"),
                "statements_per_batch": summary["profile"].get("statements_per_batch"),
            }
        ),
        flush=True,
    )
    if failures:
        print(json.dumps({"first_failures": failures[:3]}), flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
