"""The capacity model of `make bench` (README "Capacity model"): CPU milliseconds per operation in each tier, as
measured by locust/bench_capacity.py, turned into gunicorn and Celery processes, PostgreSQL cores (all on one
primary, and with the reads on replicas), storage and WAL for Qingdao's peak hour. Pure functions, unit-tested in
tests/load/test_benchkit.py; locust/benchkit.py prints the result."""

import math

QINGDAO = {
    "residents": 10_000_000,
    "actions_per_day": 5_000_000,
    "peak_factor": 10,  # the peak hour carries 10x the day's average rate
    # Residents open the app far more often than they earn (0.5 actions per resident per day): we plan for 2
    # opens per resident per day, each open reading 5 screens (wallet, ledger, actions, rewards, profile).
    "opens_per_resident_per_day": 2,
    "reads_per_open": 5,
    "redemptions_per_resident_per_day": 0.02,  # one resident in fifty redeems something each day
    "utilisation": 0.6,  # plan every tier at 60 % CPU at the peak: headroom for spikes, failover and deploys
    "pg_max_cores": 64,  # the largest single primary we would run (vCPU)
}


def per_op(probe: dict) -> dict:
    """CPU milliseconds per operation of each tier (web, worker, PostgreSQL) from one capacity probe line."""
    ops = max(probe["ops"], 1)
    return {
        "web_ms": 1000 * probe.get("web_cpu_s", 0) / ops,
        "worker_ms": 1000 * probe.get("worker_cpu_s", 0) / ops,
        "pg_ms": 1000 * probe.get("pg_cpu_s", 0) / ops,
        "bytes": probe.get("db_bytes_per_op"),
        "wal_bytes": probe.get("wal_bytes_per_op"),
    }


def capacity(probes: dict[str, dict], assumptions: dict | None = None) -> dict:
    """Processes and PostgreSQL size for the peak hour, from CPU per operation measured per tier.

    probes: {"read": {...}, "ingest": {...}, "redeem": {...}}, each a capacity probe line (ops, web_cpu_s,
    worker_cpu_s, pg_cpu_s, and for ingestion db_bytes_per_op / wal_bytes_per_op). Workloads without a probe count
    as zero (and are listed under "missing")."""
    a = {**QINGDAO, **(assumptions or {})}
    day = 86_400
    peak = {
        "read": a["residents"] * a["opens_per_resident_per_day"] * a["reads_per_open"] / day * a["peak_factor"],
        "ingest": a["actions_per_day"] / day * a["peak_factor"],
        "redeem": a["residents"] * a["redemptions_per_resident_per_day"] / day * a["peak_factor"],
    }
    costs = {name: per_op(probes[name]) for name in peak if name in probes}
    util = a["utilisation"]

    def cores(tier: str, names=tuple(peak)) -> float:
        return sum(peak[n] * costs[n][f"{tier}_ms"] / 1000 for n in names if n in costs) / util

    pg_cores = cores("pg")
    pg_write_cores = cores("pg", ("ingest", "redeem"))
    pg_by_workload = {n: round(peak[n] * costs[n]["pg_ms"] / 1000 / util, 2) for n in costs}
    ingest = costs.get("ingest", {})
    bytes_per_action = ingest.get("bytes") or 0
    wal_per_action = ingest.get("wal_bytes") or 0
    return {
        "assumptions": a,
        "peak_per_s": {n: round(v, 1) for n, v in peak.items()},
        "cpu_ms_per_op": {n: {k: round(v, 3) for k, v in c.items() if k.endswith("_ms")} for n, c in costs.items()},
        "pg_share": {
            n: round(c["pg_ms"] / (c["pg_ms"] + c["web_ms"] + c["worker_ms"]), 3)
            for n, c in costs.items()
            if c["pg_ms"] + c["web_ms"] + c["worker_ms"] > 0
        },
        "web_cores": round(cores("web"), 1),
        "web_processes": math.ceil(cores("web")),  # one gunicorn worker process per core (threads inside)
        "worker_cores": round(cores("worker"), 1),
        "worker_processes": math.ceil(cores("worker")),  # one Celery prefork child per core
        "pg_cores": round(pg_cores, 1),
        "pg_cores_by_workload": pg_by_workload,
        "pg_primary_cores_with_read_replicas": round(pg_write_cores, 1),
        # How many times Qingdao's peak one primary of pg_max_cores carries (all on the primary, and with the reads
        # on replicas): below 1 PostgreSQL is the limit at Qingdao's own scale.
        "pg_headroom_x": round(a["pg_max_cores"] / pg_cores, 1) if pg_cores else None,
        "pg_headroom_x_with_read_replicas": round(a["pg_max_cores"] / pg_write_cores, 1) if pg_write_cores else None,
        "db_bytes_per_action": round(bytes_per_action),
        "db_gb_per_year": round(bytes_per_action * a["actions_per_day"] * 365 / 1e9, 1),
        "wal_gb_per_day": round(wal_per_action * a["actions_per_day"] / 1e9, 2),
        "missing": [n for n in peak if n not in costs],
        "read_endpoints_cpu_ms": {
            name.split(":", 1)[1]: {k: round(v, 3) for k, v in per_op(probe).items() if k in ("web_ms", "pg_ms")}
            for name, probe in probes.items()
            if name.startswith("read:")
        },
    }


def capacity_text(model: dict) -> str:
    a, m = model["assumptions"], model
    lines = [
        f"Qingdao: {a['residents']:,} residents, {a['actions_per_day']:,} actions/day, peak {a['peak_factor']}x, "
        f"{a['opens_per_resident_per_day']} opens x {a['reads_per_open']} reads per resident per day, "
        f"{a['redemptions_per_resident_per_day']} redemptions per resident per day, CPU planned at "
        f"{a['utilisation']:.0%}",
        "peak: " + ", ".join(f"{n} {v:,.0f}/s" for n, v in m["peak_per_s"].items()),
    ]
    for name, c in m["cpu_ms_per_op"].items():
        lines.append(
            f"  {name:<7} CPU ms/op web {c['web_ms']:.3f}  worker {c['worker_ms']:.3f}  PostgreSQL {c['pg_ms']:.3f}"
            f"  (PostgreSQL share {m['pg_share'].get(name, 0):.0%})"
        )
    for path, c in m.get("read_endpoints_cpu_ms", {}).items():
        lines.append(f"    {path:<24} CPU ms/request web {c['web_ms']:.3f}  PostgreSQL {c['pg_ms']:.3f}")
    lines += [
        f"web: {m['web_cores']} cores -> {m['web_processes']} gunicorn worker processes (1 per core)",
        f"workers: {m['worker_cores']} cores -> {m['worker_processes']} Celery processes (1 per core)",
        f"PostgreSQL: {m['pg_cores']} cores at the peak ("
        + ", ".join(f"{n} {v}" for n, v in m["pg_cores_by_workload"].items())
        + f"); {m['pg_primary_cores_with_read_replicas']} on the primary once reads go to replicas",
        f"one {a['pg_max_cores']}-core primary carries {m['pg_headroom_x']}x the peak "
        f"({m['pg_headroom_x_with_read_replicas']}x with reads on replicas)",
        f"storage: {m['db_bytes_per_action']:,} bytes per action -> {m['db_gb_per_year']:,} GB/year; "
        f"WAL {m['wal_gb_per_day']} GB/day",
    ]
    if m["missing"]:
        lines.append("not measured (counted as zero): " + ", ".join(m["missing"]))
    return "\n".join(lines)
