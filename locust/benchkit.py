#!/usr/bin/env python
"""`make bench`'s report: collects every benchmark's summary lines (the common shape, README "Performance":
`{"summary": true, "bench", "product_per_s", "floor_name", "floor_per_s", "ratio", "target", ...}`) from the JSON
lines each benchmark printed into .local/bench/logs/<name>.jsonl, writes .local/bench/summary.json, prints a table
of every ratio with its two sides and its target, draws one chart of all ratios against their targets
(.local/bench/bench.svg) and prints the capacity model for Qingdao computed from the figures measured in the same
run (.local/bench/capacity.json; the README's "Capacity model" explains it).

    python locust/benchkit.py report .local/bench [--chart-copy docs/bench.svg]

No Django and no third-party imports: the pure functions here are unit-tested (tests/load/test_benchkit.py)."""

import argparse
import json
import shutil
import sys
import time
from html import escape
from pathlib import Path

from capacity_model import capacity, capacity_text

# Targets of the issues, used only for benchmarks that do not print summary lines yet (see legacy_summaries).
INGEST_TARGET = 0.35  # issue 17: >= 0.35x the 2-client SQL floor
REDEEM_TARGET = 0.8  # issue 14: at least 0.8 of redeem_floor.py


def json_lines(text: str) -> list[dict]:
    """Every line of `text` that is a JSON object (benchmarks print progress and other text too)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                out.append(value)
    return out


def legacy_summaries(records: list[dict]) -> list[dict]:
    """Summary lines derived from the ingestion and redemption benchmarks' own final lines, for versions of those
    scripts that print no BENCH_FORMAT line yet (the final line carries the ratio and both sides)."""
    out = []
    ingest = [r for r in records if r.get("benchmark") == "ingest" and r.get("ratio_to_sql_floor") is not None]
    if ingest:
        r = ingest[-1]
        floor = max(r.get("sql_floor") or [{}], key=lambda f: f.get("actions_per_s", 0))
        out.append(
            {
                "summary": True,
                "bench": "ingest",
                "product_per_s": float(r["processed_per_s"]),
                "floor_name": f"sql_floor.py --clients {floor.get('clients', '?')}",
                "floor_per_s": float(floor.get("actions_per_s", 0)),
                "ratio": float(r["ratio_to_sql_floor"]),
                "target": INGEST_TARGET,
                "p99_ms": None,
                "p99_target_ms": None,
                "errors": int(r.get("failures", 0)),
                "postgres": r.get("postgres"),
                "derived": True,
            }
        )
    redeem = [r for r in records if r.get("benchmark") == "redeem" and r.get("ratio_to_floor") is not None]
    if redeem:
        r = redeem[-1]
        out.append(
            {
                "summary": True,
                "bench": "redeem",
                "product_per_s": float(r["redemptions_per_s"]),
                "floor_name": f"redeem_floor.py --clients {r.get('clients', '?')}",
                "floor_per_s": float(r["redeem_floor"]["redemptions_per_s"]),
                "ratio": float(r["ratio_to_floor"]),
                "target": REDEEM_TARGET,
                "p99_ms": None,
                "p99_target_ms": None,
                "errors": int(r.get("errors", 0)),
                "postgres": r.get("postgres"),
                "derived": True,
            }
        )
    return out


def collect(logs: dict[str, str]) -> list[dict]:
    """All summary lines of every benchmark's output ({name: text}), in order, each tagged with its script;
    a script without any summary line contributes what legacy_summaries derives from its output."""
    out = []
    for script, text in logs.items():
        records = json_lines(text)
        lines = [r for r in records if r.get("summary") is True] or legacy_summaries(records)
        out.extend({**line, "script": script} for line in lines)
    return out


def verdict(line: dict) -> str:
    """pass / short against the ratio target (and the p99 target when one is given); '-' without a target."""
    if line.get("ratio") is None or line.get("target") is None:
        return "-"
    ok = line["ratio"] >= line["target"] and not line.get("errors")
    if line.get("p99_target_ms") is not None and line.get("p99_ms") is not None:
        ok = ok and line["p99_ms"] < line["p99_target_ms"]
    return "pass" if ok else "short"


def _num(value, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def table(lines: list[dict]) -> str:
    """A plain-text table: benchmark, product/s, floor (name and /s), ratio, target, p99 (target), errors, verdict."""
    head = ("benchmark", "product/s", "floor", "floor/s", "ratio", "target", "p99 ms (target)", "errors", "")
    rows = [
        (
            str(line.get("bench")),
            _num(line.get("product_per_s"), 1),
            str(line.get("floor_name") or "-"),
            _num(line.get("floor_per_s"), 1),
            _num(line.get("ratio"), 3),
            _num(line.get("target"), 2),
            f"{_num(line.get('p99_ms'), 1)} ({_num(line.get('p99_target_ms'))})",
            str(line.get("errors", "-")),
            verdict(line),
        )
        for line in lines
    ]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" if i in (0, 2) else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*head), fmt.format(*("-" * w for w in widths)), *(fmt.format(*r) for r in rows)])


def svg_chart(lines: list[dict], title: str = "Product / floor, measured in one run", note: str = "") -> str:
    """One horizontal bar per ratio (green: at or above target, orange: short) with its target as a black tick."""
    rated = [line for line in lines if line.get("ratio") is not None]
    width, left, right, bar, gap, top = 820, 250, 150, 18, 10, 44
    height = top + len(rated) * (bar + gap) + 50
    scale_max = max([1.0, *(line["ratio"] for line in rated), *(line.get("target") or 0 for line in rated)]) * 1.05
    span = width - left - right

    def x(value: float) -> float:
        return left + value / scale_max * span

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        'font-size="12"><rect width="100%" height="100%" fill="white"/>',
        f'<text x="10" y="20" font-size="14">{escape(title)}</text>',
        '<text x="10" y="36" fill="#555">bar: ratio (green at or above target, orange short); '
        "black tick: target</text>",
    ]
    for i, line in enumerate(rated):
        y = top + i * (bar + gap)
        good = verdict(line) == "pass"
        parts.append(
            f'<text x="{left - 8}" y="{y + bar - 5}" text-anchor="end">{escape(str(line["bench"]))[:40]}</text>'
        )
        parts.append(
            f'<rect x="{left}" y="{y}" width="{max(x(line["ratio"]) - left, 1):.1f}" height="{bar}" '
            f'fill="{"#2a7" if good else "#e83"}"/>'
        )
        if line.get("target") is not None:
            tx = x(line["target"])
            parts.append(
                f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{y - 3}" y2="{y + bar + 3}" stroke="black" stroke-width="2"/>'
            )
        label = f"{line['ratio']:.2f}  ({_num(line.get('product_per_s'))} / {_num(line.get('floor_per_s'))})"
        label_x = x(max(line["ratio"], line.get("target") or 0)) + 6
        parts.append(f'<text x="{label_x:.1f}" y="{y + bar - 5}">{escape(label)}</text>')
    axis_y = top + len(rated) * (bar + gap)
    parts.append(f'<line x1="{left}" x2="{left + span}" y1="{axis_y}" y2="{axis_y}" stroke="#999"/>')
    for tick in [t / 4 for t in range(0, int(scale_max * 4) + 1)]:
        parts.append(f'<text x="{x(tick):.1f}" y="{axis_y + 16}" text-anchor="middle" fill="#555">{tick:g}</text>')
    if note:
        parts.append(f'<text x="10" y="{axis_y + 34}" fill="#333">{escape(note)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


# --- Locust step load (locust/ceiling.py) ----------------------------------------------------------------------


def histogram_delta(after: dict, before: dict) -> dict:
    """Response-time histogram ({ms: count}, Locust's `response_times`) of the requests between two copies."""
    return {ms: n - before.get(ms, 0) for ms, n in after.items() if n - before.get(ms, 0) > 0}


def histogram_percentile(histogram: dict, q: float) -> float | None:
    """The smallest response time with at least q of the requests at or below it (Locust's own rule)."""
    total = sum(histogram.values())
    if not total:
        return None
    seen = 0
    for ms in sorted(histogram):
        seen += histogram[ms]
        if seen >= q * total:
            return float(ms)
    return float(max(histogram))


def step_result(users: int, seconds: float, requests: int, failures: int, histogram: dict) -> dict:
    return {
        "users": users,
        "seconds": round(seconds, 1),
        "requests": requests,
        "failures": failures,
        "error_ratio": round(failures / requests, 4) if requests else 0.0,
        "rps": round(requests / seconds, 1) if seconds else 0.0,
        "p95_ms": histogram_percentile(histogram, 0.95),
        "p99_ms": histogram_percentile(histogram, 0.99),
    }


def step_breaks(step: dict, p95_bound_ms: float) -> bool:
    """A step past the ceiling: any error, or a 95th percentile above the bound (or no request at all)."""
    return step["failures"] > 0 or not step["requests"] or (step["p95_ms"] or 0) > p95_bound_ms


def ceiling_of(steps: list[dict], p95_bound_ms: float) -> dict | None:
    """The ceiling: the highest step (most users) before the first that breaks; None when the first breaks."""
    best = None
    for step in steps:
        if step_breaks(step, p95_bound_ms):
            break
        best = step
    return best


def ceiling_summary(steps: list[dict], p95_bound_ms: float) -> dict:
    """The summary line of the step load (no floor: the ceiling itself is the figure)."""
    top = ceiling_of(steps, p95_bound_ms)
    return {
        "summary": True,
        "bench": "locust ceiling (mixed personas)",
        "product_per_s": top["rps"] if top else 0.0,
        "floor_name": None,
        "floor_per_s": None,
        "ratio": None,
        "target": None,
        "p95_ms": top["p95_ms"] if top else None,
        "p95_bound_ms": p95_bound_ms,
        "p99_ms": top["p99_ms"] if top else None,
        "p99_target_ms": None,
        "errors": 0 if top else (steps[0]["failures"] if steps else 0),
        "users": top["users"] if top else 0,
        "steps": len(steps),
        "stopped_by": next(
            (
                f"{s['users']} users: {s['failures']} errors, p95 {s['p95_ms']} ms"
                for s in steps
                if step_breaks(s, p95_bound_ms)
            ),
            "the last step (no error, p95 within the bound: raise LOAD_MAX_STEPS to go further)",
        ),
    }


def markdown_figures(machine: dict, lines: list[dict], model: dict | None, when: str) -> str:
    """The README's block of figures for one run: machine, ratios, ceiling, capacity model."""
    pg = machine.get("postgres", {})
    out = [
        f"Figures of one `make bench` run ({when}; {machine.get('cores')} cores {machine.get('cpu_model', '')}, "
        f"{machine.get('ram_gb')} GB RAM, load average {machine.get('loadavg_at_start')} at the start; "
        f"PostgreSQL {str(pg.get('server_version', '?')).split(' ')[0]} with "
        f"{machine.get('postgres_durability')}, shared_buffers {pg.get('shared_buffers')}, wal_sync_method "
        f"{pg.get('wal_sync_method')}; gunicorn {machine.get('gunicorn_workers')} workers x "
        f"{machine.get('gunicorn_threads')} threads, redemption {machine.get('redeem_gunicorn')}, Celery "
        f"concurrency {machine.get('celery_concurrency')}):",
        "",
        "| benchmark | product/s | floor | floor/s | ratio | target | p99 ms | errors | |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for line in lines:
        if line.get("ratio") is None:
            continue
        out.append(
            f"| {line['bench']} | {_num(line.get('product_per_s'), 1)} | {line.get('floor_name')} | "
            f"{_num(line.get('floor_per_s'), 1)} | {_num(line.get('ratio'), 3)} | {_num(line.get('target'), 2)} | "
            f"{_num(line.get('p99_ms'), 1)} | {line.get('errors')} | {verdict(line)} |"
        )
    for line in lines:
        if str(line.get("bench", "")).startswith("locust ceiling"):
            out += [
                "",
                f"Locust ceiling (mixed personas, step load, p95 bound {line['p95_bound_ms']:.0f} ms): "
                + (
                    f"**{line['users']} users, {line['product_per_s']} req/s, p95 {line['p95_ms']:.0f} ms, 0 % errors**"
                    f"; stopped by {line['stopped_by']}."
                    if line.get("users")
                    else f"none, the first step already broke ({line['stopped_by']})."
                ),
            ]
    if model:
        out += ["", "```", capacity_text(model), "```"]
    return "\n".join(out) + "\n"


def report(out: Path, chart_copy: Path | None) -> int:
    logs = {p.stem: p.read_text() for p in sorted((out / "logs").glob("*.jsonl"))}
    lines = collect({name: text for name, text in logs.items() if name != "capacity"})
    probes = {r["capacity_probe"]: r for r in json_lines(logs.get("capacity", "")) if r.get("capacity_probe")}
    machine = json.loads((out / "machine.json").read_text()) if (out / "machine.json").exists() else {}
    model = capacity(probes) if probes else None
    (out / "summary.json").write_text(json.dumps({"machine": machine, "summaries": lines}, indent=2))
    if model:
        (out / "capacity.json").write_text(json.dumps(model, indent=2))
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    (out / "figures.md").write_text(markdown_figures(machine, lines, model, when))
    title = f"Product / floor, one run on {machine.get('cores', '?')} cores, {machine.get('postgres_durability', '')}"
    ceilings = [line for line in lines if str(line.get("bench", "")).startswith("locust ceiling")]
    note = ""
    if ceilings:
        c = ceilings[-1]
        note = (
            f"Locust ceiling (mixed personas): {c['users']} users, {c['product_per_s']} req/s, p95 {c['p95_ms']} ms, "
            "0 % errors"
            if c.get("users")
            else f"Locust ceiling: none ({c['stopped_by']})"
        )
    (out / "bench.svg").write_text(svg_chart(lines, title, note))
    if chart_copy:
        chart_copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "bench.svg", chart_copy)
    rated = [line for line in lines if line.get("ratio") is not None]
    print(table(rated) if rated else "no ratio measured")
    for line in lines:
        if str(line.get("bench", "")).startswith("locust ceiling") and not line.get("users"):
            print(f"\nLocust ceiling: none, the first step already broke ({line['stopped_by']})")
        elif str(line.get("bench", "")).startswith("locust ceiling"):
            print(
                f"\nLocust ceiling (mixed personas, step load): {line['users']} users, "
                f"{line['product_per_s']} req/s, p95 {line['p95_ms']} ms (bound {line['p95_bound_ms']} ms), "
                f"0 % errors; stopped by {line['stopped_by']}"
            )
    print(
        f"\nsummary: {out / 'summary.json'}  chart: {out / 'bench.svg'}  README block: {out / 'figures.md'}"
        + (f" (copied to {chart_copy})" if chart_copy else "")
    )
    if model:
        print("\nCapacity model (README, 'Capacity model'):\n" + capacity_text(model))
    return 0


PG_SETTINGS = (
    "server_version", "fsync", "synchronous_commit", "full_page_writes", "wal_level", "wal_sync_method",
    "wal_buffers", "max_wal_size", "checkpoint_timeout", "commit_delay", "shared_buffers", "effective_cache_size",
    "work_mem", "max_connections",
)  # fmt: skip


def durability(settings: dict) -> str:
    return ", ".join(f"{k}={settings.get(k)}" for k in ("fsync", "synchronous_commit", "full_page_writes"))


def is_durable(settings: dict) -> bool:
    return all(settings.get(k) == "on" for k in ("fsync", "synchronous_commit", "full_page_writes"))


def machine(dsn: str) -> dict:
    """Cores, RAM, CPU model, PostgreSQL version and settings, and the stack's process counts."""
    import os
    import platform

    import psycopg

    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "")
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    mem_kb = next((int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal")), 0)
    with psycopg.connect(dsn) as conn:
        settings = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in PG_SETTINGS}
    return {
        "cores": os.cpu_count(),
        # Other jobs on the same cores make every figure noisy: the 1/5/15-minute load average at the start says so.
        "loadavg_at_start": [round(v, 1) for v in os.getloadavg()],
        "cpu_model": model,
        "ram_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgres": settings,
        "postgres_durability": durability(settings),
        "durable": is_durable(settings),
        "gunicorn_workers": int(os.environ.get("WEB_CONCURRENCY", 4)),
        "gunicorn_threads": int(os.environ.get("GUNICORN_THREADS", 2)),
        "celery_concurrency": int(os.environ.get("CELERY_CONCURRENCY", 2)),
        "redeem_gunicorn": os.environ.get("BENCH_REDEEM_GUNICORN", ""),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    mac = sub.add_parser("machine", help="write OUT/machine.json; exit 3 when PostgreSQL is not durable")
    mac.add_argument("out", type=Path)
    mac.add_argument("--dsn", required=True)
    rep = sub.add_parser("report", help="summary.json, table, chart and capacity model from OUT/logs/*.jsonl")
    rep.add_argument("out", type=Path)
    rep.add_argument("--chart-copy", type=Path)
    args = ap.parse_args()
    if args.command == "machine":
        record = machine(args.dsn)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "machine.json").write_text(json.dumps(record, indent=2))
        print(json.dumps({"machine": record}))
        sys.exit(0 if record["durable"] else 3)
    sys.exit(report(args.out, args.chart_copy))


if __name__ == "__main__":
    main()
