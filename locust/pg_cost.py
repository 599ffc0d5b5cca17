"""What PostgreSQL itself spends on a piece of work: CPU of the whole cluster (every backend and background
process, from /proc) and WAL bytes, between two snapshots. Used by bench_redeem.py to report the product's and
redeem_floor.py's PostgreSQL CPU and WAL per redemption side by side, in the same run on the same cluster.

Works when the cluster runs on this machine and its data directory is readable (the local and bench clusters);
otherwise `snapshot` returns None and callers report nothing.

    snap = pg_cost.snapshot(dsn); ...work...; pg_cost.per_op(snap, pg_cost.snapshot(dsn), ops)
"""

import os
import time
from dataclasses import dataclass

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Snapshot:
    cpu_s: float
    wal_lsn: int
    at: float


def _postmaster_pid(conn) -> int | None:
    data_dir = conn.execute("SHOW data_directory").fetchone()[0]
    try:
        with open(os.path.join(data_dir, "postmaster.pid")) as f:
            return int(f.readline())
    except (OSError, ValueError):
        return None


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from 3 (state) on: comm may contain spaces


def cluster_cpu_s(postmaster: int) -> float:
    """The postmaster's own CPU, its reaped children's (cutime/cstime: backends that already exited) and every
    live child's."""
    main = _stat(postmaster)
    if main is None:
        return 0.0
    ticks = sum(int(x) for x in main[11:15])  # utime stime cutime cstime
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat(int(entry))
        if fields and int(fields[1]) == postmaster:  # ppid
            ticks += int(fields[11]) + int(fields[12])
    return ticks / TICKS


def _lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) + int(low, 16)


def snapshot(dsn: str) -> Snapshot | None:
    import psycopg

    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            pid = _postmaster_pid(conn)
            lsn = _lsn(conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0])
    except Exception:
        return None
    if pid is None:
        return None
    return Snapshot(cluster_cpu_s(pid), lsn, time.perf_counter()) if pid else None


def snapshot_after_reap(dsn: str) -> Snapshot | None:
    """A snapshot once backends that just disconnected have exited (their CPU moves to the postmaster's)."""
    time.sleep(0.5)
    return snapshot(dsn)


def per_op(before: Snapshot | None, after: Snapshot | None, ops: int) -> dict | None:
    if before is None or after is None or ops <= 0:
        return None
    return {
        "pg_cpu_ms_per_op": round((after.cpu_s - before.cpu_s) * 1000 / ops, 2),
        "wal_bytes_per_op": round((after.wal_lsn - before.wal_lsn) / ops),
        "pg_cpu_share": round((after.cpu_s - before.cpu_s) / max(after.at - before.at, 1e-9), 2),
    }


def statements_reset(dsn: str) -> bool:
    """Reset pg_stat_statements when the cluster has it loaded (shared_preload_libraries); False otherwise."""
    import psycopg

    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            conn.execute("SELECT pg_stat_statements_reset()")
        return True
    except Exception:
        return False


def statements_top(dsn: str, ops: int, limit: int = 12) -> list[dict]:
    """The statements that cost PostgreSQL most since the reset, per op: calls, execution and planning ms, WAL
    bytes and shared blocks dirtied."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 90), calls, total_exec_time, total_plan_time,"
            " wal_bytes, shared_blks_dirtied FROM pg_stat_statements ORDER BY total_exec_time + total_plan_time DESC"
            " LIMIT %s",
            [limit],
        ).fetchall()
    return [
        {
            "query": q,
            "calls_per_op": round(calls / ops, 2),
            "exec_ms_per_op": round(exec_ms / ops, 3),
            "plan_ms_per_op": round(plan_ms / ops, 3),
            "wal_bytes_per_op": round(float(wal) / ops),
            "blks_dirtied_per_op": round(dirtied / ops, 2),
        }
        for q, calls, exec_ms, plan_ms, wal, dirtied in rows
    ]


def process_tree_cpu_s(pid_file) -> float | None:
    """CPU seconds of a process (by its pid file, e.g. gunicorn's master) and its live children."""
    try:
        with open(pid_file) as f:
            root = int(f.read().strip())
    except (OSError, ValueError):
        return None
    main = _stat(root)
    if main is None:
        return None
    ticks = sum(int(x) for x in main[11:15])
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields and int(fields[1]) == root:
                ticks += int(fields[11]) + int(fields[12])
    return ticks / TICKS
