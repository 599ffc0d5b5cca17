"""`make bench`'s report (locust/benchkit.py): summary collection, the ratio table, the chart, the Locust ceiling
and the capacity model; and the capacity probe's process-tree CPU accounting (locust/bench_capacity.py)."""

import importlib.util
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

LOCUST_DIR = Path(__file__).resolve().parents[2] / "locust"


def _load(name: str, as_name: str = ""):
    spec = importlib.util.spec_from_file_location(as_name or f"_bench_{name}", LOCUST_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    if as_name:
        sys.modules[as_name] = module
    spec.loader.exec_module(module)
    return module


capacity_model = _load("capacity_model", "capacity_model")  # benchkit imports it by that name
benchkit = _load("benchkit")


def line(bench, product, floor, target, **extra):
    return {
        "summary": True,
        "bench": bench,
        "product_per_s": product,
        "floor_name": "floor",
        "floor_per_s": floor,
        "ratio": round(product / floor, 3),
        "target": target,
        "p99_ms": extra.pop("p99_ms", None),
        "p99_target_ms": extra.pop("p99_target_ms", None),
        "errors": extra.pop("errors", 0),
        "postgres": "fsync=on, synchronous_commit=on, full_page_writes=on",
        **extra,
    }


def test_collect_keeps_every_summary_line_and_ignores_everything_else():
    reads = "\n".join(
        [
            "progress 10/100",
            json.dumps({"phase": "healthz", "rps": 4000}),
            json.dumps(line("read:/api/v1/me/wallet", 2100, 4000, 0.5, p99_ms=40, p99_target_ms=50)),
            "{not json",
            json.dumps(line("read:/api/v1/me/ledger", 1500, 4000, 0.5, p99_ms=60, p99_target_ms=50)),
        ]
    )
    collected = benchkit.collect({"reads": reads})
    assert [c["bench"] for c in collected] == ["read:/api/v1/me/wallet", "read:/api/v1/me/ledger"]
    assert {c["script"] for c in collected} == {"reads"}
    assert [benchkit.verdict(c) for c in collected] == ["pass", "short"]  # the ledger misses its p99 target


def test_ingest_and_redeem_without_summary_lines_are_derived_from_their_final_lines():
    ingest = {
        "benchmark": "ingest",
        "processed_per_s": 3700,
        "failures": 0,
        "sql_floor": [{"clients": 1, "actions_per_s": 20000}, {"clients": 2, "actions_per_s": 33000}],
        "ratio_to_sql_floor": 0.112,
    }
    redeem = {
        "benchmark": "redeem",
        "clients": 50,
        "redemptions_per_s": 420.0,
        "errors": 0,
        "redeem_floor": {"redemptions_per_s": 600.0},
        "ratio_to_floor": 0.7,
        "postgres": "fsync=on, synchronous_commit=on",
    }
    collected = benchkit.collect(
        {"ingest": json.dumps({"prepared": {}}) + "\n" + json.dumps(ingest), "redeem": json.dumps(redeem)}
    )
    by_bench = {c["bench"]: c for c in collected}
    assert by_bench["ingest"]["floor_per_s"] == 33000  # the best (2-client) floor, as the issue compares
    assert by_bench["ingest"]["floor_name"] == "sql_floor.py --clients 2"
    assert by_bench["ingest"]["target"] == 0.35 and benchkit.verdict(by_bench["ingest"]) == "short"
    assert by_bench["redeem"]["floor_per_s"] == 600 and by_bench["redeem"]["target"] == 0.8
    # A script that prints BENCH_FORMAT lines is taken as it is, never derived a second time.
    both = benchkit.collect({"ingest": json.dumps(ingest) + "\n" + json.dumps(line("ingest", 12000, 33000, 0.35))})
    assert len(both) == 1 and both[0]["product_per_s"] == 12000


def test_errors_make_a_ratio_short_and_no_target_is_no_verdict():
    assert benchkit.verdict(line("x", 100, 100, 0.5, errors=1)) == "short"
    assert benchkit.verdict({**line("x", 100, 100, 0.5), "target": None}) == "-"


def test_table_shows_both_sides_target_and_verdict():
    text = benchkit.table([line("ingest", 12000, 33000, 0.35), line("redeem", 500, 600, 0.8)])
    rows = text.splitlines()
    assert len(rows) == 4
    assert "12,000.0" in rows[2] and "33,000.0" in rows[2] and "0.364" in rows[2] and rows[2].endswith("pass")
    assert "0.833" in rows[3] and rows[3].endswith("pass")


def test_chart_is_svg_with_one_bar_and_one_target_tick_per_ratio():
    lines = [line("ingest", 12000, 33000, 0.35), line("read:/api/v1/me/wallet", 1000, 4000, 0.5)]
    lines.append({"summary": True, "bench": "locust ceiling (mixed personas)", "ratio": None, "target": None})
    root = ET.fromstring(benchkit.svg_chart(lines))
    ns = "{http://www.w3.org/2000/svg}"
    bars = [r for r in root.iter(f"{ns}rect") if r.get("fill") in ("#2a7", "#e83")]
    assert [b.get("fill") for b in bars] == ["#2a7", "#e83"]  # pass green, short orange; the ceiling has no bar
    ticks = [t for t in root.iter(f"{ns}line") if t.get("stroke") == "black"]
    assert len(ticks) == 2


def test_histogram_percentile_and_delta():
    before = {10: 5, 20: 5}
    after = {10: 15, 20: 5, 30: 9, 200: 1}
    delta = benchkit.histogram_delta(after, before)
    assert delta == {10: 10, 30: 9, 200: 1}
    assert benchkit.histogram_percentile(delta, 0.5) == 10
    assert benchkit.histogram_percentile(delta, 0.95) == 30
    assert benchkit.histogram_percentile(delta, 0.99) == 200
    assert benchkit.histogram_percentile({}, 0.95) is None


def test_the_ceiling_is_the_last_step_before_the_first_error_or_slow_p95():
    def step(users, failures=0, p95=50):
        return benchkit.step_result(users, 10, 1000 + users, failures, {p95: 1000 + users})

    steps = [step(20), step(40, p95=120), step(60, failures=1), step(80)]
    summary = benchkit.ceiling_summary(steps, p95_bound_ms=200)
    assert summary["users"] == 40 and summary["p95_ms"] == 120 and summary["errors"] == 0
    assert summary["product_per_s"] == pytest.approx(104.0)
    assert summary["stopped_by"].startswith("60 users: 1 errors")
    assert benchkit.ceiling_summary([step(20), step(40, p95=250)], 200)["users"] == 20
    assert benchkit.ceiling_summary([step(20, failures=3)], 200)["users"] == 0


def test_capacity_model_from_cpu_per_operation():
    probes = {
        "read": {"ops": 1000, "web_cpu_s": 2.0, "worker_cpu_s": 0.0, "pg_cpu_s": 0.5},  # 2 ms web, 0.5 ms pg
        "ingest": {
            "ops": 10_000,
            "web_cpu_s": 1.0,
            "worker_cpu_s": 4.0,
            "pg_cpu_s": 10.0,
            "db_bytes_per_op": 2000,
            "wal_bytes_per_op": 3000,
        },
    }
    assumptions = {
        "residents": 864_000,
        "actions_per_day": 864_000,
        "peak_factor": 10,
        "opens_per_resident_per_day": 1,
        "reads_per_open": 5,
        "redemptions_per_resident_per_day": 0,
        "utilisation": 0.5,
        "pg_max_cores": 64,
    }
    model = capacity_model.capacity(probes, assumptions)
    assert model["peak_per_s"] == {"read": 500.0, "ingest": 100.0, "redeem": 0.0}
    # web: (500 x 2 ms + 100 x 0.1 ms) / 0.5 = 2.02 cores; worker: 100 x 0.4 ms / 0.5 = 0.08
    assert model["web_cores"] == 2.0 and model["web_processes"] == 3
    assert model["worker_cores"] == 0.1 and model["worker_processes"] == 1
    # PostgreSQL: (500 x 0.5 ms + 100 x 1 ms) / 0.5 = 0.7 cores, 0.2 of them for ingestion
    assert model["pg_cores"] == 0.7 and model["pg_primary_cores_with_read_replicas"] == 0.2
    assert model["pg_headroom_x"] == round(64 / 0.7, 1) and model["pg_headroom_x_with_read_replicas"] == 320.0
    assert model["pg_share"] == {"read": 0.2, "ingest": round(1.0 / 1.5, 3)}
    assert model["db_gb_per_year"] == round(2000 * 864_000 * 365 / 1e9, 1)
    assert model["missing"] == ["redeem"]
    assert model["read_endpoints_cpu_ms"] == {}
    with_endpoint = capacity_model.capacity({**probes, "read:/api/v1/me/wallet": {"ops": 10, "web_cpu_s": 0.01}})
    assert with_endpoint["read_endpoints_cpu_ms"] == {"/api/v1/me/wallet": {"web_ms": 1.0, "pg_ms": 0.0}}
    assert with_endpoint["web_cores"] == capacity_model.capacity(probes)["web_cores"]  # the mix alone sizes the tier
    assert "not measured (counted as zero): redeem" in capacity_model.capacity_text(model)


def test_report_writes_summary_chart_and_capacity(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "ingest.jsonl").write_text(json.dumps(line("ingest", 12000, 33000, 0.35)))
    (logs / "capacity.jsonl").write_text(
        json.dumps({"capacity_probe": "read", "ops": 100, "web_cpu_s": 0.2, "worker_cpu_s": 0, "pg_cpu_s": 0.1})
    )
    (tmp_path / "machine.json").write_text(json.dumps({"cores": 2, "postgres_durability": "fsync=on"}))
    copy = tmp_path / "docs" / "bench.svg"
    assert benchkit.report(tmp_path, copy) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["machine"]["cores"] == 2 and [s["bench"] for s in summary["summaries"]] == ["ingest"]
    assert copy.read_text() == (tmp_path / "bench.svg").read_text()
    assert json.loads((tmp_path / "capacity.json").read_text())["cpu_ms_per_op"]["read"]["web_ms"] == 2.0
    figures = (tmp_path / "figures.md").read_text()
    assert "| ingest | 12,000.0 | floor | 33,000.0 | 0.364 | 0.35 | - | 0 | pass |" in figures
    assert "2 cores" in figures and "CPU ms/op web 2.000" in figures


def test_durability_check_needs_all_three_settings_on():
    on = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
    assert benchkit.is_durable(on)
    for key in on:
        assert not benchkit.is_durable({**on, key: "off"})
    assert not benchkit.is_durable({**on, "synchronous_commit": "local"})


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_process_tree_cpu_counts_children_that_already_ended():
    capacity = _load("bench_capacity")
    before = capacity.tree_cpu_seconds([os.getpid()])
    # A child that burns about 0.4 s of CPU and exits: reaped, so only our cutime carries it.
    subprocess.run([sys.executable, "-c", "import time\nt=time.process_time()\nwhile time.process_time()-t<0.4: pass"])
    after = capacity.tree_cpu_seconds([os.getpid()])
    assert after - before >= 0.3
    assert capacity.tree_cpu_seconds([2**22 + 12345]) == 0.0  # no such process
