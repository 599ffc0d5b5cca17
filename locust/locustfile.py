"""Locust suite. Personas: a resident using the mobile app (profile, wallet, ledger and its Merkle proofs,
action history, the calculator, summary, leaderboards, now and then a self-reported ride with a photo); a data
partner pushing signed batches; a public reader of the statistics and leaderboards; a resident who browses the
rewards and redeems; a merchant's cashier who validates the vouchers they bring; a reviewer working through the
review queue (approving or rejecting self-reports) and reading methodology versions. Buyers (Stripe checkout) are
left out: each order needs the Stripe emulator and a webhook round trip, which would measure localstripe.
Every persona is a FastHttpUser (geventhttpclient: far less client CPU per request than requests, so the two
shared cores measure the server, not the load generator).

Thresholds (locust/thresholds.json) are checked when the run ends and alone decide the exit code: 0 when the
error rate and the 95th percentile response time are within them, 1 otherwise (Locust's own rule, non-zero on
any single error such as one dropped keep-alive connection, is overridden)."""

import collections
import itertools
import json
import os
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from prepare import partner_headers

from locust import FastHttpUser, between, events, task

THRESHOLDS = json.loads((Path(__file__).parent / "thresholds.json").read_text())
_users_file = os.environ.get("LOCUST_USERS_FILE")
PREPARED = (
    json.loads(Path(_users_file).read_text()) if _users_file else {"residents": [], "partner": None, "merchant": None}
)
_next_prepared = itertools.cycle(PREPARED["residents"] or [None])
_CARDS = [r["card"] for r in PREPARED["residents"]] or ["LOAD-NOBODY"]


def _results(response) -> list:
    """The items of a list response (paginated `{"results": [...]}` or a bare array); [] when it failed."""
    if response.status_code != 200:
        return []
    body = response.json()
    return body.get("results", []) if isinstance(body, dict) else body


class Resident(FastHttpUser):
    """A resident opening the app: profile, consents, districts, wallet, ledger and a proof of one of its
    transactions, action history (list, a day, one action), the calculator, summary, leaderboards."""

    wait_time = between(0.2, 1.0)
    weight = 4

    def on_start(self):
        prepared = next(_next_prepared)
        self.headers = {"Authorization": f"Bearer {prepared['access']}"} if prepared else {}

    @task(5)
    def me(self):
        self.client.get("/api/v1/me", headers=self.headers)

    @task(4)
    def wallet(self):
        self.client.get("/api/v1/me/wallet", headers=self.headers)

    @task(3)
    def ledger_and_proof(self):
        entries = _results(self.client.get("/api/v1/me/ledger", headers=self.headers))
        if not entries:
            return
        entry = random.choice(entries)
        # A transaction of a day whose root is not computed yet (today's, on a fresh stack) answers 409
        # `proof_not_ready`: a correct answer, not a failure. Anything else but a 200 is.
        with self.client.get(
            f"/api/v1/me/ledger/{entry['id']}/proof",
            headers=self.headers,
            name="/api/v1/me/ledger/[id]/proof",
            catch_response=True,
        ) as response:
            if response.status_code == 200 or (response.status_code == 409 and b"proof_not_ready" in response.content):
                response.success()
            else:
                response.failure(f"proof: {response.status_code}")

    @task(1)
    def public_roots(self):
        self.client.get("/api/v1/public/ledger/roots")

    @task(2)
    def calculator(self):
        # A plausible ride: within the methodology's validity rules (0.3-60 km, at most 60 km/h).
        km = random.uniform(0.5, 30)
        data = {"distance_km": f"{km:.2f}", "duration_s": int(km * 3600 / random.uniform(10, 40)) + 1}
        self.client.post(
            "/api/v1/methodologies/bus_ride/calculate",
            json={"data": data},
            headers=self.headers,
            name="/api/v1/methodologies/[code]/calculate",
        )

    @task(2)
    def consents(self):
        self.client.get("/api/v1/me/consents", headers=self.headers)

    @task(3)
    def districts(self):
        self.client.get("/api/v1/districts")

    @task(3)
    def actions(self):
        actions = _results(self.client.get("/api/v1/me/actions", headers=self.headers))
        if actions:
            action = random.choice(actions)
            self.client.get(f"/api/v1/me/actions/{action['id']}", headers=self.headers, name="/api/v1/me/actions/[id]")

    @task(1)
    def actions_of_a_day(self):
        day = (datetime.now(ZoneInfo("Asia/Shanghai")) - timedelta(days=random.randint(0, 2))).date().isoformat()
        self.client.get(f"/api/v1/me/actions?date={day}", headers=self.headers, name="/api/v1/me/actions?date=[day]")

    @task(1)
    def health(self):
        self.client.get("/healthz")

    @task(1)
    def self_report(self):
        """A ride the partner did not send: reported with a photo, waiting for a reviewer (multipart)."""
        if not self.headers:
            return
        occurred = datetime.now(UTC) - timedelta(minutes=random.randint(10, 3000))
        data = {"distance_km": f"{random.uniform(1, 15):.2f}", "duration_s": random.randint(900, 3000)}
        with self.client.post(
            "/api/v1/me/actions",
            data={"methodology": "bus_ride", "occurred_at": occurred.isoformat(), "data": json.dumps(data)},
            files={"evidence": ("ride.png", _PHOTO, "image/png")},
            headers=self.headers,
            name="/api/v1/me/actions (self-report)",
            catch_response=True,
        ) as response:
            if response.status_code == 201:
                _TO_REVIEW.append(response.json()["id"])
                response.success()
            else:
                response.failure(f"self-report: {response.status_code} {response.text[:120]}")

    @task(2)
    def my_summary(self):
        self.client.get("/api/v1/me/summary", headers=self.headers)

    @task(3)
    def leaderboard(self):
        period = random.choice(["week", "month"])
        self.client.get(f"/api/v1/leaderboards/{period}", headers=self.headers, name="/api/v1/leaderboards/[period]")


def _photo() -> bytes:
    """A small real PNG (the server decodes and re-encodes every photo)."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 48), (30, 160, 90)).save(out, format="PNG")
    return out.getvalue()


_PHOTO = _photo()
# Self-reports waiting for the Reviewer persona (one Locust process: a plain deque is enough).
_TO_REVIEW: collections.deque = collections.deque(maxlen=10_000)

_DISTRICTS = ["370202", "370203", "370213", "370212", "370211", "370214", "370215", "370281", "370283", "370285"]


class PublicReader(FastHttpUser):
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


# Most riders have no account in the app: a partner's batch is mostly taps of cards nobody has linked (stored
# unbound, claimed if the card is linked later), with about 2 in 50 from the prepared residents. With every tap
# on the 20 prepared cards, each resident rode ~25 buses an hour and each batch's double-claim check read all of
# their trips of the last two days, so a step of the ceiling cost more the more steps came before it.
_UNLINKED_CARDS = 100_000
_LINKED_SHARE = 1 / 25


def _ride_card() -> str:
    if random.random() < _LINKED_SHARE:
        return random.choice(_CARDS)
    return f"LOAD-RIDER-{random.randrange(_UNLINKED_CARDS):06d}"


class Partner(FastHttpUser):
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
                "subject": {"kind": "transit_card", "identifier": _ride_card()},
                "occurred_at": (now - timedelta(minutes=random.randint(10, 3000))).isoformat(),
                "data": {"distance_km": f"{random.uniform(0.5, 20):.2f}", "duration_s": random.randint(900, 3000)},
            }
            for _ in range(50)
        ]
        body = json.dumps({"actions": actions}).encode()
        self.client.post(
            "/api/v1/partner/actions",
            data=body,
            name="/api/v1/partner/actions [50]",
            headers=partner_headers(self.partner["partner_id"], self.partner["secret"], body),
        )


# Codes redeemed by shoppers, waiting at the counter (one Locust process: a plain deque is enough).
_AT_COUNTER: collections.deque = collections.deque(maxlen=10_000)


class RewardShopper(FastHttpUser):
    """A resident browsing the catalogue, redeeming (with an Idempotency-Key, retried once with the same key
    like a flaky mobile network), looking at their vouchers and now and then cancelling one."""

    wait_time = between(0.5, 2.0)
    weight = 2

    def on_start(self):
        prepared = next(_next_prepared)
        self.headers = {"Authorization": f"Bearer {prepared['access']}"} if prepared else {}
        self.rewards = (PREPARED.get("merchant") or {}).get("rewards", [])

    @task(5)
    def browse(self):
        self.client.get("/api/v1/rewards", headers=self.headers)
        if self.rewards:
            self.client.get(f"/api/v1/rewards/{random.choice(self.rewards)}", name="/api/v1/rewards/{id}")

    @task(2)
    def affordable(self):
        self.client.get("/api/v1/rewards?affordable=true&ordering=points_cost", headers=self.headers)

    @task(3)
    def redeem(self):
        if not self.rewards or not self.headers:
            return
        reward, key = random.choice(self.rewards), uuid.uuid4().hex
        headers = {**self.headers, "Idempotency-Key": key}
        name = "/api/v1/rewards/{id}/redeem"
        response = self.client.post(f"/api/v1/rewards/{reward}/redeem", json={}, headers=headers, name=name)
        if response.status_code == 201:
            if random.random() < 0.1:  # the app retries: the same voucher comes back
                self.client.post(f"/api/v1/rewards/{reward}/redeem", json={}, headers=headers, name=name + " (retry)")
            if random.random() < 0.1:
                self.client.post(
                    f"/api/v1/me/vouchers/{response.json()['code']}/cancel",
                    headers=self.headers,
                    name="/api/v1/me/vouchers/{code}/cancel",
                )
            else:
                _AT_COUNTER.append(response.json())

    @task(2)
    def vouchers(self):
        self.client.get("/api/v1/me/vouchers", headers=self.headers)


class Cashier(FastHttpUser):
    """A merchant's cashier: scans the QR of the next voucher in line (or types its code), checks the day."""

    wait_time = between(0.5, 1.5)
    weight = 1

    def on_start(self):
        merchant = PREPARED.get("merchant") or {}
        self.headers = {"Authorization": f"Bearer {merchant['access']}"} if merchant else {}

    @task(5)
    def validate(self):
        if not self.headers or not _AT_COUNTER:
            return
        voucher = _AT_COUNTER.popleft()
        if random.random() < 0.5:
            self.client.post(
                "/api/v1/merchant/vouchers/scan", json={"qr_payload": voucher["qr_payload"]}, headers=self.headers
            )
        else:
            self.client.post(
                f"/api/v1/merchant/vouchers/{voucher['code']}/redeem",
                headers=self.headers,
                name="/api/v1/merchant/vouchers/{code}/redeem",
            )

    @task(1)
    def day(self):
        if self.headers:
            self.client.get("/api/v1/merchant/vouchers", headers=self.headers)
            self.client.get("/api/v1/merchant/summary", headers=self.headers)


class Reviewer(FastHttpUser):
    """A reviewer: the review queue (flagged and self-reported actions), approving or rejecting the residents'
    self-reports with a note, and the methodology versions (drafts and their history)."""

    wait_time = between(1.0, 3.0)
    weight = 1

    def on_start(self):
        reviewer = PREPARED.get("reviewer") or {}
        self.headers = {"Authorization": f"Bearer {reviewer['access']}"} if reviewer else {}

    @task(3)
    def queue(self):
        if self.headers:
            self.client.get("/api/v1/admin/reviews", headers=self.headers)

    @task(3)
    def decide(self):
        if not self.headers or not _TO_REVIEW:
            return
        action_id, decision = _TO_REVIEW.popleft(), random.choice(["approve", "approve", "reject"])
        with self.client.post(
            f"/api/v1/admin/reviews/{action_id}/{decision}",
            json={"note": "load test"},
            headers=self.headers,
            name=f"/api/v1/admin/reviews/[id]/{decision}",
            catch_response=True,
        ) as response:
            # Flagged by the pipeline meanwhile, or decided already: a correct answer, not a failure.
            if response.status_code == 200 or b"action_not_reviewable" in response.content:
                response.success()
            else:
                response.failure(f"review: {response.status_code}")

    @task(1)
    def methodology_versions(self):
        if self.headers:
            code = random.choice(["bus_ride", "metro_ride", "bike_ride"])
            self.client.get(
                f"/api/v1/admin/methodologies/{code}/versions",
                headers=self.headers,
                name="/api/v1/admin/methodologies/[code]/versions",
            )


@events.quitting.add_listener
def check_thresholds(environment, **_kwargs):
    if getattr(environment, "shape_class", None) is not None:  # the step load (locust/ceiling.py) reports itself
        return
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
    # The thresholds alone decide: without an explicit 0, Locust exits 1 on any single error even when the run
    # met every threshold.
    if problems:
        print("THRESHOLDS MISSED: " + "; ".join(problems))
        environment.process_exit_code = 1
    else:
        print("thresholds met")
        environment.process_exit_code = 0
