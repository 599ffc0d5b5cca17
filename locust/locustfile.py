"""Locust suite. Personas: a resident using the mobile app; a data partner pushing signed batches; a public
reader of the statistics and leaderboards.

Thresholds (locust/thresholds.json) are checked when the run ends: the process exits non-zero when the error
rate or the 95th percentile response time is above them."""

import hashlib
import hmac
import itertools
import json
import os
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from locust import HttpUser, between, events, task

THRESHOLDS = json.loads((Path(__file__).parent / "thresholds.json").read_text())
_users_file = os.environ.get("LOCUST_USERS_FILE")
PREPARED = json.loads(Path(_users_file).read_text()) if _users_file else {"residents": [], "partner": None}
_next_prepared = itertools.cycle(PREPARED["residents"] or [None])
_CARDS = [r["card"] for r in PREPARED["residents"]] or ["LOAD-NOBODY"]


class Resident(HttpUser):
    """A resident opening the app: profile, consents, districts, actions."""

    wait_time = between(0.2, 1.0)
    weight = 4

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

    @task(3)
    def actions(self):
        self.client.get("/api/v1/me/actions", headers=self.headers)

    @task(1)
    def health(self):
        self.client.get("/healthz")

    @task(2)
    def my_summary(self):
        self.client.get("/api/v1/me/summary", headers=self.headers)

    @task(3)
    def leaderboard(self):
        period = random.choice(["week", "month"])
        self.client.get(f"/api/v1/leaderboards/{period}", headers=self.headers, name="/api/v1/leaderboards/[period]")


_DISTRICTS = ["370202", "370203", "370213", "370212", "370211", "370214", "370215", "370281", "370283", "370285"]


class PublicReader(HttpUser):
    """Anyone reading the public statistics and leaderboards (the city's web page, the app before login)."""

    wait_time = between(0.5, 2.0)
    weight = 2

    @task(3)
    def city(self):
        self.client.get("/api/v1/stats/city")

    @task(3)
    def district(self):
        code = random.choice(_DISTRICTS)
        self.client.get(f"/api/v1/stats/districts/{code}", name="/api/v1/stats/districts/[code]")

    @task(1)
    def plan(self):
        self.client.get("/api/v1/stats/plan")

    @task(3)
    def leaderboard(self):
        period = random.choice(["week", "month"])
        district = random.choice(["", f"?district={random.choice(_DISTRICTS)}"])
        self.client.get(f"/api/v1/leaderboards/{period}{district}", name="/api/v1/leaderboards/[period]")

    @task(2)
    def district_ranking(self):
        self.client.get("/api/v1/leaderboards/districts")


class Partner(HttpUser):
    """A transit operator pushing signed batches of card taps (50 rides a request)."""

    wait_time = between(0.5, 2.0)
    weight = 1

    def on_start(self):
        self.partner = PREPARED.get("partner")

    @task
    def submit_batch(self):
        if not self.partner:
            return
        now = datetime.now(UTC)
        actions = [
            {
                "external_id": f"load-{uuid.uuid4().hex}",
                "methodology": "bus_ride",
                "subject": {"kind": "transit_card", "identifier": random.choice(_CARDS)},
                "occurred_at": (now - timedelta(minutes=random.randint(10, 3000))).isoformat(),
                "data": {"distance_km": f"{random.uniform(0.5, 20):.2f}", "duration_s": random.randint(900, 3000)},
            }
            for _ in range(50)
        ]
        body = json.dumps({"actions": actions}).encode()
        ts, nonce = str(int(time.time())), uuid.uuid4().hex
        signature = hmac.new(
            self.partner["secret"].encode(), f"{ts}.{nonce}.".encode() + body, hashlib.sha256
        ).hexdigest()
        self.client.post(
            "/api/v1/partner/actions",
            data=body,
            name="/api/v1/partner/actions [50]",
            headers={
                "Content-Type": "application/json",
                "X-Partner-Id": str(self.partner["partner_id"]),
                "X-Timestamp": ts,
                "X-Nonce": nonce,
                "X-Signature": signature,
            },
        )


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
