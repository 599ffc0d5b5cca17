#!/usr/bin/env python
"""Per-action cost of ingestion, measured in-process (no HTTP, no Celery): what to steer by on a shared machine.

Submits --batches signed-partner batches of --batch bus rides through the service the API calls
(`actions_ingest`), then processes them with the service the Celery task calls (`batch_process`), one phase at a
time, and for each phase reports per action:

- WAL bytes (`pg_current_wal_lsn` before/after, a CHECKPOINT before each phase so full-page images count the
  way they do in a long run's first touches),
- rows inserted / updated (HOT or not) / deleted and the index entries they cost, per table
  (`pg_stat_user_tables` deltas; the measuring backend exits at the end of the phase to flush its counters),
- CPU of the PostgreSQL backend that did the work (/proc) and of this Python process,
- with --triggers: foreign-key checks and other trigger calls (auto_explain with log_triggers, read back from
  the cluster's log; costs time, so CPU figures of such a run are not comparable).

It also runs ../shared/bench/sql_floor.py's own batch writer (one client) the same way, so WAL, rows and
PostgreSQL CPU per action have their floor beside them.

    DATABASE_URL=... REDIS_URL=... python locust/ingest_measure.py [--batches 5] [--triggers]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "locust"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")
CLOCK = os.sysconf("SC_CLK_TCK")
TAG = "/* bench-profile */ "
TABLES = f"""{TAG}
SELECT s.schemaname || '.' || s.relname, s.n_tup_ins, s.n_tup_upd, s.n_tup_hot_upd, s.n_tup_del,
       (SELECT count(*) FROM pg_index i WHERE i.indrelid = s.relid)
FROM pg_stat_user_tables s WHERE s.schemaname IN ('public', 'floor')"""
WAL_BY_RELATION = f"""{TAG}
WITH r AS (
  SELECT r.resource_manager AS rm, r.record_length AS len, r.fpi_length AS fpi,
         nullif(substring(r.block_ref from 'rel [0-9]+/[0-9]+/([0-9]+)'), '')::oid AS node
  FROM pg_get_wal_records_info(%s::pg_lsn, %s::pg_lsn) r
)
SELECT coalesce(t.relname, c.relname, r.rm), count(*), sum(r.len), sum(r.fpi),
       count(*) FILTER (WHERE c.relkind = 'i'), sum(r.len) FILTER (WHERE c.relkind = 'i')
FROM r LEFT JOIN pg_class c ON c.relfilenode = r.node
LEFT JOIN pg_index i ON i.indexrelid = c.oid
LEFT JOIN pg_class t ON t.oid = i.indrelid
GROUP BY 1 ORDER BY 3 DESC LIMIT %s"""
STATEMENTS = f"""{TAG}
SELECT queryid, left(regexp_replace(query, '\\s+', ' ', 'g'), 100), calls, total_exec_time
FROM pg_stat_statements WHERE query NOT LIKE '%%bench-profile%%'"""
TRIGGER_LINE = re.compile(r"Trigger (?:for constraint )?(\S+?)(?: on \S+)?: (?:time=\S+ )?calls=(\d+)")


def _cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK


class Probe:
    """WAL, table counters and CPU around one phase of work done on `work_conn` (a psycopg connection or
    Django's)."""

    def __init__(self, dsn: str):
        import psycopg

        self.side = psycopg.connect(dsn, autocommit=True)

    def wal(self) -> int:
        return int(self.side.execute(f"{TAG}SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()[0])

    def statements(self) -> dict:
        try:
            return {r[0]: r[1:] for r in self.side.execute(STATEMENTS).fetchall()}
        except Exception:  # pg_stat_statements not preloaded: no statement profile
            return {}

    def top_statements(self, actions: int, top: int = 14) -> list[str]:
        """Execution time per action of the statements (foreign-key checks included with track=all)."""
        after, rows = self.statements(), []
        for qid, (text, calls, ms) in after.items():
            b = self.s0.get(qid, (text, 0, 0.0))
            if calls - b[1]:
                rows.append((ms - b[2], calls - b[1], text))
        rows.sort(reverse=True)
        total = sum(r[0] for r in rows)
        lines = [f"all statements: {total * 1000 / actions:.1f} us/action"]
        return lines + [
            f"{ms * 1000 / actions:6.1f} us {calls / actions:5.2f}x {text}" for ms, calls, text in rows[:top]
        ]

    def lsn(self) -> str:
        return str(self.side.execute(f"{TAG}SELECT pg_current_wal_lsn()").fetchone()[0])

    def wal_by_relation(self, actions: int, top: int = 14) -> list[str]:
        """Where the WAL went (pg_walinspect): relation, record type, records and bytes per action."""
        try:
            self.side.execute(f"{TAG}CREATE EXTENSION IF NOT EXISTS pg_walinspect")
            rows = self.side.execute(WAL_BY_RELATION, [self.l0, self.l1, top]).fetchall()
        except Exception as exc:
            return [f"pg_walinspect unavailable: {exc}"]
        return [
            f"{rel}: {b / actions:.0f} B in {n / actions:.2f} rec (fpi {f / actions:.0f}; its indexes "
            f"{(ib or 0) / actions:.0f} B in {ni / actions:.2f} rec)"
            for rel, n, b, f, ni, ib in rows
        ]

    def tables(self) -> dict:
        self.side.execute(f"{TAG}SELECT pg_stat_clear_snapshot()")
        return {r[0]: r[1:] for r in self.side.execute(TABLES).fetchall()}

    def start(self, backend_pid: int, checkpoint: bool = True) -> None:
        if checkpoint:  # before the first phase only: later phases touch pages the first one already logged
            self.side.execute(f"{TAG}CHECKPOINT")
        self.pid = backend_pid
        self.t0 = self.tables()
        self.s0 = self.statements()
        self.w0 = self.wal()
        self.l0 = self.lsn()
        self.c0 = _cpu_of(backend_pid)
        self.p0 = time.process_time()
        self.wall0 = time.perf_counter()

    def stop_cpu(self) -> None:
        self.c1 = _cpu_of(self.pid)
        self.p1 = time.process_time()
        self.wall1 = time.perf_counter()
        self.w1 = self.wal()
        self.l1 = self.lsn()

    def result(self, actions: int) -> dict:
        time.sleep(0.3)  # the backend has exited: its counters are flushed
        t1 = self.tables()
        per_table, rows, entries = {}, 0, 0
        for name, (ins, upd, hot, dele, indexes) in t1.items():
            b = self.t0.get(name, (0, 0, 0, 0, indexes))
            d = [ins - b[0], upd - b[1], hot - b[2], dele - b[3]]
            if not any(d):
                continue
            e = (d[0] + d[1] - d[2]) * indexes
            rows += d[0] + d[1] + d[3]
            entries += e
            n = [x / actions for x in d]
            per_table[name] = f"ins {n[0]:.2f} upd {n[1]:.2f} (hot {n[2]:.2f}) del {n[3]:.2f} idx {indexes}"
            per_table[name] += f" -> entries {e / actions:.2f}"
        return {
            "wal_bytes": round((self.w1 - self.w0) / actions),
            "rows": round(rows / actions, 2),
            "index_entries": round(entries / actions, 2),
            "pg_cpu_us": round((self.c1 - self.c0) * 1e6 / actions),
            "py_cpu_us": round((self.p1 - self.p0) * 1e6 / actions),
            "wall_us": round((self.wall1 - self.wall0) * 1e6 / actions),
            "tables": per_table,
            "wal": self.wal_by_relation(actions),
            "statements": self.top_statements(actions),
        }


class TriggerLog:
    """Trigger calls per action from auto_explain's log lines (LOG level, into the cluster's log file)."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    @staticmethod
    def enable(cursor) -> None:
        cursor.execute("LOAD 'auto_explain'")
        for name, value in (
            ("log_min_duration", "0"),
            ("log_analyze", "on"),
            ("log_triggers", "on"),
            ("log_timing", "off"),
            ("log_nested_statements", "on"),
        ):
            cursor.execute(f"SET auto_explain.{name} = {value}")

    def counts(self, actions: int) -> dict:
        with self.path.open("rb") as f:
            f.seek(self.offset)
            text = f.read().decode(errors="replace")
        calls: dict[str, int] = {}
        for name, n in TRIGGER_LINE.findall(text):
            calls[name] = calls.get(name, 0) + int(n)
        fk = sum(n for name, n in calls.items() if "_fk_" in name or name.endswith("_fk"))
        return {
            "fk_checks": round(fk / actions, 2),
            "trigger_calls": {k: round(v / actions, 2) for k, v in sorted(calls.items(), key=lambda kv: -kv[1])},
        }


def measure_product(dsn: str, batches: int, size: int, residents: int, triggers: bool, log: Path) -> dict:
    import django

    django.setup()
    from bench_ingest import make_batches, prepare
    from django.db import connection

    from backend.actions import services
    from backend.partners.models import Partner

    services.enqueue_batch = lambda batch_id: None  # processed below, in this process
    partner_id, _secret, cards = prepare(residents)
    partner = Partner.objects.get(pk=partner_id)
    bodies = make_batches(cards, batches * size, size)
    items = [json.loads(b)["actions"] for b in bodies]
    actions = batches * size
    probe = Probe(dsn)
    out = {}

    def phase(name: str, work) -> None:
        connection.close()
        connection.ensure_connection()
        with connection.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            pid = cur.fetchone()[0]
            if triggers:
                TriggerLog.enable(cur)
        trig = TriggerLog(log) if triggers else None
        probe.start(pid, checkpoint=not out)
        work()
        probe.stop_cpu()
        connection.close()
        out[name] = probe.result(actions)
        if trig:
            time.sleep(0.3)
            out[name].update(trig.counts(actions))

    batch_ids: list[int] = []

    def ingest() -> None:
        for i, chunk in enumerate(items):
            results = services.actions_ingest(partner=partner, nonce=f"measure-{partner_id}-{i}", items=chunk)
            assert all(r["status"] == "accepted" for r in results), results[:3]

    def process() -> None:
        from backend.actions.models import IngestBatch

        batch_ids.extend(IngestBatch.objects.filter(partner_id=partner_id).order_by("id").values_list("id", flat=True))
        for batch_id in batch_ids:
            services.batch_process(batch_id=batch_id)

    phase("ingest (request)", ingest)
    phase("process (worker)", process)
    from backend.actions.models import Action

    out["statuses"] = dict(
        Action.objects.filter(partner_id=partner_id).values_list("status").annotate(n=django.db.models.Count("id"))
    )
    return out


def measure_floor(dsn: str, batches: int, size: int) -> dict:
    import psycopg

    spec = importlib.util.spec_from_file_location("sql_floor", ROOT.parent / "shared" / "bench" / "sql_floor.py")
    floor = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(floor)
    rows = floor.make_batches(0, batches * size, size)
    probe = Probe(dsn)
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute(floor.SCHEMA)
    conn.execute("VACUUM ANALYZE floor.account")
    conn.close()
    conn = psycopg.connect(dsn, autocommit=True)
    probe.start(conn.execute("SELECT pg_backend_pid()").fetchone()[0])
    for b in rows:
        floor.ingest(conn, b)
    probe.stop_cpu()
    conn.close()
    result = probe.result(batches * size)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("DROP SCHEMA floor CASCADE")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=5)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument(
        "--residents",
        type=int,
        help="fresh residents (default: one per 10 actions, as in bench_ingest.py's 100,000 "
        "actions for 10,000 residents: accounts and cap rows are created at the same rate)",
    )
    ap.add_argument("--triggers", action="store_true", help="count trigger calls (FK checks) via auto_explain")
    ap.add_argument("--no-floor", action="store_true")
    a = ap.parse_args()
    dsn = os.environ["DATABASE_URL"]
    log = Path(os.environ.get("LOCAL_DIR") or ROOT / ".local") / "pg" / "postgres.log"
    result = {
        "product": measure_product(
            dsn, a.batches, a.batch, a.residents or max(a.batches * a.batch // 10, 1), a.triggers, log
        )
    }
    if not a.no_floor:
        result["floor (sql_floor.py, 1 client)"] = measure_floor(dsn, a.batches, a.batch)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
