"""Where an ingestion run's time and writes go, measured from outside the product (used by bench_ingest.py).

- Database: WAL bytes (`pg_current_wal_lsn` deltas), rows inserted / updated (HOT or not) / deleted per table
  (`pg_stat_user_tables` deltas) and the index entries those rows cost (an insert or a non-HOT update writes
  one entry in every index of its table), statements and their WAL per query (`pg_stat_statements`, when
  the cluster preloads it: `PG_EXTRA_OPTS="-c shared_preload_libraries=pg_stat_statements"`).
- CPU: user + system seconds of this cluster's PostgreSQL (postmaster and every backend, reaped ones
  included), of gunicorn and of the Celery worker (their pid files under .local/run and their children),
  read from /proc.

Every query of its own carries the comment `bench-profile`, so pg_stat_statements figures leave it out.
"""

from __future__ import annotations

import os
from pathlib import Path

import psycopg

TAG = "/* bench-profile */ "
CLOCK = os.sysconf("SC_CLK_TCK")

TABLES = f"""{TAG}
SELECT s.relname, s.n_tup_ins, s.n_tup_upd, s.n_tup_hot_upd, s.n_tup_del,
       (SELECT count(*) FROM pg_index i WHERE i.indrelid = s.relid)
FROM pg_stat_user_tables s WHERE s.schemaname = 'public'"""
STATEMENTS = f"""{TAG}
SELECT queryid, left(regexp_replace(query, '\\s+', ' ', 'g'), 110), calls, total_exec_time, rows, wal_bytes
FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND query NOT LIKE '%bench-profile%'"""


def _statements(conn: psycopg.Connection) -> dict | None:
    try:
        rows = conn.execute(STATEMENTS).fetchall()
    except psycopg.Error:
        return None
    return {r[0]: r[1:] for r in rows}


def db_snapshot(dsn: str) -> dict:
    with psycopg.connect(dsn, autocommit=True) as conn:
        try:
            conn.execute(f"{TAG}CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        except psycopg.Error:
            pass
        conn.execute(f"{TAG}SELECT pg_stat_clear_snapshot()")
        wal = conn.execute(f"{TAG}SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()[0]
        tables = {r[0]: r[1:] for r in conn.execute(TABLES).fetchall()}
        return {"wal": int(wal), "tables": tables, "statements": _statements(conn)}


def wal_bytes(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return int(conn.execute(f"{TAG}SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()[0])


def db_delta(before: dict, after: dict, actions: int, batches: int) -> dict:
    """Per credited action: WAL bytes, rows and index entries written; per batch: statements; the tables and
    statements that write most."""
    per_table = {}
    rows_total = index_total = 0
    for name, (ins, upd, hot, dele, indexes) in after["tables"].items():
        b = before["tables"].get(name, (0, 0, 0, 0, indexes))
        d_ins, d_upd, d_hot, d_del = ins - b[0], upd - b[1], hot - b[2], dele - b[3]
        if not (d_ins or d_upd or d_del):
            continue
        entries = (d_ins + d_upd - d_hot) * indexes
        rows_total += d_ins + d_upd + d_del
        index_total += entries
        per_table[name] = {
            "ins": round(d_ins / actions, 3),
            "upd": round(d_upd / actions, 3),
            "hot": round(d_hot / actions, 3),
            "del": round(d_del / actions, 3),
            "indexes": indexes,
            "index_entries": round(entries / actions, 3),
        }
    result = {
        "wal_bytes_per_action": round((after["wal"] - before["wal"]) / actions),
        "rows_written_per_action": round(rows_total / actions, 2),
        "index_entries_per_action": round(index_total / actions, 2),
        "tables_per_action": dict(sorted(per_table.items(), key=lambda kv: -kv[1]["index_entries"])),
    }
    if before["statements"] is not None and after["statements"] is not None:
        deltas = []
        for qid, (text, calls, ms, rows, wal) in after["statements"].items():
            b = before["statements"].get(qid, (text, 0, 0.0, 0, 0))
            if calls - b[1]:
                deltas.append((text, calls - b[1], ms - b[2], rows - b[3], int(wal - b[4])))
        result["statements_per_batch"] = round(sum(d[1] for d in deltas) / max(batches, 1), 1)
        result["db_exec_ms_per_batch"] = round(sum(d[2] for d in deltas) / max(batches, 1), 1)
        result["top_statements"] = [
            {
                "query": text,
                "calls_per_batch": round(calls / max(batches, 1), 2),
                "ms_per_batch": round(ms / max(batches, 1), 2),
                "wal_per_action": round(wal / actions),
            }
            for text, calls, ms, _rows, wal in sorted(deltas, key=lambda d: -d[2])[:14]
        ]
    return result


# ------------------------------------------------------------------------------------------------- CPU


def _stat(pid: int) -> tuple[int, float, float] | None:
    """(ppid, own cpu seconds, reaped children's cpu seconds) of a process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    ppid = int(fields[1])
    own = (int(fields[11]) + int(fields[12])) / CLOCK
    children = (int(fields[13]) + int(fields[14])) / CLOCK
    return ppid, own, children


def _tree_cpu(root: int | None) -> float:
    """CPU seconds of a process, its reaped children and every live descendant."""
    if root is None:
        return 0.0
    stats = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            s = _stat(int(entry.name))
            if s:
                stats[int(entry.name)] = s
    if root not in stats:
        return 0.0
    children: dict[int, list[int]] = {}
    for pid, (ppid, _own, _reaped) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        _ppid, own, reaped = stats[pid]
        total += own + reaped
        todo.extend(children.get(pid, []))
    return total


def _pid_file(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def cpu_snapshot(root: Path) -> dict:
    local = Path(os.environ.get("LOCAL_DIR") or root / ".local")
    return {
        "postgres": _tree_cpu(_pid_file(local / "pg" / "data" / "postmaster.pid")),
        "gunicorn": _tree_cpu(_pid_file(root / ".local" / "run" / "gunicorn.pid")),
        "celery": _tree_cpu(_pid_file(root / ".local" / "run" / "worker.pid")),
        "self": _tree_cpu(os.getpid()),
    }


def cpu_delta(before: dict, after: dict, actions: int) -> dict:
    """CPU milliseconds per 1,000 actions of each side, and PostgreSQL's share against the workers'."""
    per_k = {k: round((after[k] - before[k]) * 1e6 / actions, 1) for k in after}
    workers = per_k["gunicorn"] + per_k["celery"]
    return {
        "cpu_ms_per_1000_actions": per_k,
        "postgres_to_workers_cpu": round(per_k["postgres"] / workers, 2) if workers else None,
    }
