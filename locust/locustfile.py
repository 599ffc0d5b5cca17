"""Locust suite. Personas: a resident using the mobile app. Later issues add partners, merchants, reviewers.

Thresholds (locust/thresholds.json) are checked when the run ends: the process exits non-zero when the error
rate or the 95th percentile response time is above them."""

import itertools
import json
import os
from pathlib import Path

from locust import HttpUser, between, events, task

THRESHOLDS = json.loads((Path(__file__).parent / "thresholds.json").read_text())
_users_file = os.environ.get("LOCUST_USERS_FILE")
PREPARED = json.loads(Path(_users_file).read_text()) if _users_file else []
_next_prepared = itertools.cycle(PREPARED or [None])


class Resident(HttpUser):
    """A resident opening the app: profile, consents, districts."""

    wait_time = between(0.2, 1.0)

    def on_start(self):
        prepared = next(_next_prepared)
        self.headers = {"Authorization": f"Bearer {prepared['access']}"} if prepared else {}

    @task(5)
    def me(self):
        self.client.get("/api/v1/me", headers=self.headers)

    @task(2)
    def consents(self):
        self.client.get("/api/v1/me/consents", headers=self.headers)

    @task(3)
    def districts(self):
        self.client.get("/api/v1/districts")

    @task(1)
    def health(self):
        self.client.get("/healthz")


@events.quitting.add_listener
def check_thresholds(environment, **_kwargs):
    total = environment.stats.total
    p95 = total.get_response_time_percentile(0.95) or 0
    problems = []
    if total.fail_ratio > THRESHOLDS["max_fail_ratio"]:
        problems.append(f"error rate {total.fail_ratio:.2%} > {THRESHOLDS['max_fail_ratio']:.0%}")
    if p95 > THRESHOLDS["max_p95_ms"]:
        problems.append(f"p95 {p95} ms > {THRESHOLDS['max_p95_ms']} ms")
    print(
        f"load summary: {total.num_requests} requests, {total.fail_ratio:.2%} errors, p95 {p95} ms, "
        f"{total.total_rps:.1f} req/s"
    )
    if problems:
        print("THRESHOLDS MISSED: " + "; ".join(problems))
        environment.process_exit_code = 1
