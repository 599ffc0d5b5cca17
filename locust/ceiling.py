"""The Locust step load (`make load-ceiling`, and a part of `make bench`): every persona of locustfile.py, with
users added step by step (LOAD_STEP_USERS more every LOAD_STEP_SECONDS, at most LOAD_MAX_STEPS steps) until a step
has an error or its 95th percentile exceeds LOAD_P95_BOUND_MS (default: max_p95_ms of thresholds.json). The ceiling
is the highest step with 0 % errors and p95 within the bound; its users, req/s and p95 are reported.

Each step is measured after LOAD_SETTLE_SECONDS (users spawning) until its end, from the difference of Locust's
cumulative counters and response-time histogram, so one step's figures never mix with the previous one's.
Writes LOAD_CEILING_OUT (default .local/load/ceiling.json) and prints the BENCH_FORMAT summary line; exit code 0
when a ceiling was found (the first step already failing: 1)."""

import json
import os
import sys
from pathlib import Path

from locust import LoadTestShape, events

sys.path.insert(0, str(Path(__file__).parent))
from benchkit import ceiling_summary, histogram_delta, step_breaks, step_result
from locustfile import *  # noqa: F403 (the personas)
from locustfile import THRESHOLDS

STEP_USERS = int(os.environ.get("LOAD_STEP_USERS", 10))
STEP_SECONDS = float(os.environ.get("LOAD_STEP_SECONDS", 15))
# 30 steps (300 users) lie well past this machine's ceiling (100-120 users of the mix on 2 cores, 2026-12-07): at 12
# the run of eadeaaf ended at its last step unbroken and reported a bound, not the ceiling.
MAX_STEPS = int(os.environ.get("LOAD_MAX_STEPS", 30))
SETTLE_SECONDS = float(os.environ.get("LOAD_SETTLE_SECONDS", min(3.0, STEP_SECONDS / 4)))
P95_BOUND_MS = float(os.environ.get("LOAD_P95_BOUND_MS", THRESHOLDS["max_p95_ms"]))
OUT = Path(os.environ.get("LOAD_CEILING_OUT", Path(__file__).resolve().parents[1] / ".local/load/ceiling.json"))
STEPS: list[dict] = []


class StepLoad(LoadTestShape):
    """Step n (from 0) runs (n + 1) x LOAD_STEP_USERS users; the test stops after the first step that breaks."""

    def __init__(self):
        super().__init__()
        self.step = -1
        self.mark = None  # (time, requests, failures, histogram) when the current step's measurement began

    def _snapshot(self):
        total = self.runner.environment.stats.total
        return (self.get_run_time(), total.num_requests, total.num_failures, dict(total.response_times))

    def _close_step(self) -> dict | None:
        if self.mark is None:
            return None
        t, requests, failures, histogram = self._snapshot()
        t0, requests0, failures0, histogram0 = self.mark
        step = step_result(
            (self.step + 1) * STEP_USERS,
            t - t0,
            requests - requests0,
            failures - failures0,
            histogram_delta(histogram, histogram0),
        )
        STEPS.append(step)
        print(json.dumps({"step": len(STEPS), **step}), flush=True)
        return step

    def tick(self):
        run_time = self.get_run_time()
        step = int(run_time // STEP_SECONDS)
        if step != self.step:
            closed = self._close_step()
            if (closed and step_breaks(closed, P95_BOUND_MS)) or step >= MAX_STEPS:
                return None
            self.step, self.mark = step, None
        if self.mark is None and run_time - step * STEP_SECONDS >= SETTLE_SECONDS:
            self.mark = self._snapshot()
        users = (self.step + 1) * STEP_USERS
        return users, max(STEP_USERS, 10)


@events.quitting.add_listener
def report_ceiling(environment, **_kwargs):
    summary = ceiling_summary(STEPS, P95_BOUND_MS)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"summary": summary, "steps": STEPS, "step_seconds": STEP_SECONDS}, indent=2))
    print(json.dumps(summary), flush=True)
    top = summary["users"]
    print(
        f"load ceiling: {top} users, {summary['product_per_s']} req/s, p95 {summary['p95_ms']} ms, 0 % errors; "
        f"stopped by {summary['stopped_by']} ({OUT})"
        if top
        else f"no ceiling: the first step already broke ({summary['stopped_by']})",
        flush=True,
    )
    environment.process_exit_code = 0 if top else 1
