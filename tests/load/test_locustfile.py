"""The Locust suite's exit code reflects the thresholds alone, and every persona is a FastHttpUser.

The locustfile is imported in a subprocess: importing Locust monkey-patches the standard library with gevent,
which must not happen inside the test process."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys, types
sys.path.insert(0, "locust")
import locustfile
from locust import FastHttpUser

def run(fail_ratio, p95):
    total = types.SimpleNamespace(
        num_requests=1000, fail_ratio=fail_ratio, total_rps=50.0,
        get_response_time_percentile=lambda q: p95,
    )
    env = types.SimpleNamespace(stats=types.SimpleNamespace(total=total), process_exit_code=None)
    locustfile.check_thresholds(env)
    return env.process_exit_code

limits = locustfile.THRESHOLDS
users = [c for c in vars(locustfile).values() if isinstance(c, type) and issubclass(c, __import__("locust").User)
         and c.__module__ == "locustfile"]
print(json.dumps({
    "one_error_within_thresholds": run(0.001, limits["max_p95_ms"] - 1),
    "error_rate_missed": run(limits["max_fail_ratio"] * 2, 10),
    "p95_missed": run(0.0, limits["max_p95_ms"] + 1),
    "personas": sorted(c.__name__ for c in users),
    "not_fast": sorted(c.__name__ for c in users if not issubclass(c, FastHttpUser)),
    # between(min, max) keeps both bounds in its closure: the longest pause any persona takes between requests.
    "longest_pause_s": max(max(cell.cell_contents for cell in c.wait_time.__closure__) for c in users),
}))
"""


def _probe() -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_exit_code_follows_the_thresholds_alone_and_personas_are_fast_http_users():
    result = _probe()
    # A run with one dropped connection that met every threshold exits 0 (Locust alone would exit 1).
    assert result["one_error_within_thresholds"] == 0
    assert result["error_rate_missed"] == 1
    assert result["p95_missed"] == 1
    assert result["personas"] == ["Cashier", "Partner", "PublicReader", "Resident", "Reviewer", "RewardShopper"]
    assert result["not_fast"] == []


def test_gunicorn_keeps_idle_connections_longer_than_any_client_pauses():
    """gunicorn's default keep-alive (2 s) closed connections that Locust's personas (pauses up to 3 s) and the
    app were about to reuse: "connection closed" errors at the ceiling's 90-user step. The server's idle timeout
    must outlast the clients' pauses (and a load balancer's 60 s idle timeout in production)."""
    import runpy

    conf = runpy.run_path(str(ROOT / "infra" / "gunicorn.conf.py"))
    assert conf.get("keepalive", 2) > _probe()["longest_pause_s"]
    assert conf["keepalive"] > 60


CEILING_PROBE = """
import json, os, sys, types
os.environ.update(LOAD_STEP_USERS="10", LOAD_STEP_SECONDS="10", LOAD_SETTLE_SECONDS="2", LOAD_MAX_STEPS="5",
                  LOAD_P95_BOUND_MS="200", LOAD_CEILING_OUT=sys.argv[1])
sys.path.insert(0, "locust")
import ceiling

total = types.SimpleNamespace(num_requests=0, num_failures=0, response_times={})
shape = ceiling.StepLoad()
shape.runner = types.SimpleNamespace(environment=types.SimpleNamespace(stats=types.SimpleNamespace(total=total)))
clock = [0.0]
shape.get_run_time = lambda: clock[0]
ticks = []
# Steps of 10 s: 10, 20, 30, 40 users answer 10 req/s at 50, 50, 150, 150 ms; the 4th step sees 1 error.
for second in range(60):
    clock[0] = float(second)
    step = second // 10
    answer = shape.tick()
    ticks.append(answer)
    if answer is None:
        break
    total.num_requests += 10
    ms = [50, 50, 150, 150, 300, 300][step]
    total.response_times[ms] = total.response_times.get(ms, 0) + 10
    if step == 3 and second == 35:
        total.num_failures += 1
env = types.SimpleNamespace(process_exit_code=None)
ceiling.report_ceiling(env)
print(json.dumps({"ticks": ticks, "exit": env.process_exit_code, "steps": ceiling.STEPS,
                  "shape_found": ceiling.StepLoad.abstract is False}))
"""


def test_step_load_stops_at_the_first_step_with_an_error_and_reports_the_one_before(tmp_path):
    out = tmp_path / "ceiling.json"
    done = subprocess.run(
        [sys.executable, "-c", CEILING_PROBE, str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    users = [t[0] for t in result["ticks"] if t]
    assert users[:10] == [10] * 10 and users[10:20] == [20] * 10 and users[30:40] == [40] * 10
    assert result["ticks"][-1] is None and len(result["ticks"]) == 41  # stopped right after the 40-user step
    assert [s["users"] for s in result["steps"]] == [10, 20, 30, 40]
    assert [s["p95_ms"] for s in result["steps"]] == [50, 50, 150, 150]  # the error alone stops it
    assert result["steps"][0]["requests"] == 80 and result["steps"][0]["rps"] == 10.0  # measured after 2 s settle
    saved = json.loads(out.read_text())["summary"]
    assert (saved["users"], saved["p95_ms"], saved["product_per_s"], saved["errors"]) == (30, 150.0, 10.0, 0)
    assert saved["stopped_by"].startswith("40 users: 1 errors")
    assert result["exit"] == 0 and result["shape_found"]
