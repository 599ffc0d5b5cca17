"""The weekly settlement task on a real Celery worker, paying through the real Stripe Connect provider (the
official SDK) against a stand-in for Stripe's /v1/transfers that honours idempotency keys like Stripe: sent
twice at once it transfers once; a worker killed while the transfer is in flight is retried to the same
transfer (looked up by its `transfer_group`)."""

import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
from django.utils import timezone

from backend.celery import app
from backend.ledger.services import Leg, ledger_post
from backend.offsets import settlement
from backend.offsets.models import MerchantPayable, Settlement
from tests.conftest import CeleryWorker, free_port, requires_postgres
from tests.offsets.helpers import assert_offsets_invariants
from tests.rewards.helpers import give_points, redeem

pytestmark = requires_postgres


class ConnectStandIn:
    """POST /v1/transfers (same Idempotency-Key -> same transfer) and GET /v1/transfers?transfer_group=."""

    def __init__(self, delay: float):
        self.delay, self.posts, self.transfers, self.lock = delay, [], {}, threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
                key = self.headers.get("Idempotency-Key", "")
                with stand_in.lock:
                    stand_in.posts.append(key)
                    if key not in stand_in.transfers:
                        stand_in.transfers[key] = {
                            "id": f"tr_standin_{len(stand_in.transfers) + 1}",
                            "object": "transfer",
                            "amount": int(form["amount"][0]),
                            "currency": form["currency"][0],
                            "destination": form["destination"][0],
                            "transfer_group": form["transfer_group"][0],
                        }
                    reply = stand_in.transfers[key]
                time.sleep(stand_in.delay)
                self.reply(reply)

            def do_GET(self):
                group = parse_qs(urlparse(self.path).query).get("transfer_group", [""])[0]
                with stand_in.lock:
                    data = [t for t in stand_in.transfers.values() if t["transfer_group"] == group]
                self.reply({"object": "list", "url": "/v1/transfers", "has_more": False, "data": data})

            def reply(self, body):
                payload = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_port}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def connect(monkeypatch, settings):
    stand_in = ConnectStandIn(delay=1.5)
    for name, value in {
        "STRIPE_API_BASE": stand_in.base,
        "STRIPE_SECRET_KEY": "sk_test_connect",
        "OFFSET_PAYOUT_PROVIDER": "backend.offsets.payouts.StripeConnectTransferProvider",
        "SETTLEMENT_PAYOUT_LEASE_SECONDS": "4",
    }.items():
        monkeypatch.setenv(name, value)  # the worker process reads its settings from the environment
    settings.STRIPE_API_BASE, settings.STRIPE_SECRET_KEY = stand_in.base, "sk_test_connect"
    app.conf.task_always_eager = False  # tasks go to the real worker below (reset by the autouse fixture)
    yield stand_in
    stand_in.close()


@pytest.fixture
def week_of_payables(resident, resident_client, shop, reward_factory):
    merchant, staff = shop
    settlement.merchant_stripe_account_set(merchant_id=merchant.pk, stripe_account_id="acct_1Worker")
    ledger_post(
        kind="transfer",
        reason="test: offset money",
        source_type="test",
        source_id=None,
        idempotency_key="test-fund:worker",
        postings=[Leg("system:payment_clearing:CNY", -1_500), Leg("system:reward_fund:CNY", 1_500)],
    )
    for face_value in (600, 900):
        reward = reward_factory(merchant, points_cost=10, face_value_minor=face_value)
        give_points(resident, 10)
        code = redeem(resident_client, reward.pk).json()["code"]
        assert staff.client.post(f"/api/v1/merchant/vouchers/{code}/redeem").status_code == 200
    settlement.payables_fund()  # the capture enqueued it on the worker's queue; no worker yet
    assert MerchantPayable.objects.filter(status="funded").count() == 2
    MerchantPayable.objects.update(created_at=timezone.now() - timedelta(days=8))  # captured last week
    return merchant


def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError


def settled() -> str | None:
    return Settlement.objects.values_list("status", flat=True).first()


@pytest.mark.django_db(transaction=True)
def test_weekly_task_sent_twice_at_once_transfers_once(connect, week_of_payables, tmp_path):
    from backend.offsets.tasks import settlements_run

    worker = CeleryWorker(_worker_env(), _queue(), tmp_path / "worker.log").start(concurrency=2)
    try:
        settlements_run.apply_async(queue=_queue())
        settlements_run.apply_async(queue=_queue())
        wait_for(lambda: settled() == "paid")
        time.sleep(2)  # let the second task finish too
    finally:
        worker.stop()

    s = Settlement.objects.get()
    assert connect.posts == [f"settlement:{s.pk}"]
    assert (s.transfer_id, s.amount_minor, s.attempts) == ("tr_standin_1", 1_500, 1)
    assert_offsets_invariants()


@pytest.mark.django_db(transaction=True)
def test_worker_killed_during_the_transfer_is_retried_to_the_same_transfer(connect, week_of_payables, tmp_path):
    from backend.offsets.tasks import settlements_run

    worker = CeleryWorker(_worker_env(), _queue(), tmp_path / "worker.log").start()
    try:
        settlements_run.apply_async(queue=_queue())
        wait_for(lambda: connect.posts)  # the transfer is in flight at Stripe
        worker.kill()  # the machine is lost before the answer is booked
    finally:
        worker.stop()
    s = Settlement.objects.get()
    assert (s.status, s.transfer_id) == ("paying", "")

    time.sleep(4.5)  # the claim's lease runs out
    worker = CeleryWorker(_worker_env(), _queue(), tmp_path / "worker2.log").start()
    try:
        settlements_run.apply_async(queue=_queue())
        wait_for(lambda: settled() == "paid")
    finally:
        worker.stop()

    s.refresh_from_db()
    assert connect.posts == [f"settlement:{s.pk}"]  # found by its transfer_group, never sent again
    assert (s.transfer_id, s.attempts) == ("tr_standin_1", 2)
    assert_offsets_invariants()


def _queue() -> str:
    from django.conf import settings

    return settings.CELERY_TASK_DEFAULT_QUEUE


def _worker_env() -> dict:
    import os

    from django.db import connection

    db = connection.settings_dict
    return {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CELERY_TASK_ALWAYS_EAGER": "false",
    }
