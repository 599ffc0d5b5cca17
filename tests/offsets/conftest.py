"""Offsets test fixtures: a real localstripe per xdist worker (session), buyers, certified batches."""

import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from django.utils import timezone

from tests.conftest import PASSWORD, client_for, free_port, next_phone
from tests.rewards.conftest import merchant_factory, reward_factory, shop  # noqa: F401 - settlement tests

ROOT = Path(__file__).resolve().parents[2]
WEBHOOK_SECRET = "whsec_test_offsets"
_tax_ids = iter(range(1, 10_000_000))


@pytest.fixture(scope="session")
def localstripe_server(tmp_path_factory):
    """localstripe on 127.0.0.1 and a free port of this xdist worker, in memory (infra/localstripe_server.py);
    stopped at the end of the session, and it exits by itself if this process dies."""
    port = free_port()
    log = open(tmp_path_factory.mktemp("localstripe") / "localstripe.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "infra" / "localstripe_server.py"), "--port", str(port)],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"localstripe did not start, see {log.name}") from None
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    log.close()


class LocalStripe:
    def __init__(self, base: str):
        self.base = base

    def flush(self) -> None:
        requests.delete(f"{self.base}/_config/data", timeout=5).raise_for_status()

    def webhook(self, url: str, secret: str = WEBHOOK_SECRET) -> None:
        requests.post(f"{self.base}/_config/webhooks/test", data={"url": url, "secret": secret}, timeout=5)

    def client(self):
        from backend.offsets.gateway import stripe_client

        return stripe_client()

    def confirm(self, payment_intent_id: str):
        """What the buyer's browser does with Stripe.js: confirm the PaymentIntent."""
        return self.client().v1.payment_intents.confirm(payment_intent_id)

    def intent(self, payment_intent_id: str):
        return self.client().v1.payment_intents.retrieve(payment_intent_id)


@pytest.fixture
def localstripe(localstripe_server, settings):
    """The SDK pointed at this worker's localstripe, flushed; webhooks go nowhere unless a test says where."""
    settings.STRIPE_API_BASE = localstripe_server
    settings.STRIPE_SECRET_KEY = "sk_test_offsets"
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_TEST_PAYMENT_METHOD = "pm_card_visa"
    ls = LocalStripe(localstripe_server)
    ls.flush()
    ls.webhook("http://127.0.0.1:9/unused")
    return ls


def uscc(n: int) -> str:
    """A valid unified social credit code for test company n."""
    from backend.offsets.services import uscc_check_char

    body = f"91370200{n:09d}"
    return body + uscc_check_char(body)


@pytest.fixture
def make_buyer(reference_data):
    from backend.offsets.services import buyer_create

    def make(company="青岛海风科技有限公司"):
        phone = next_phone()
        user = buyer_create(phone=phone, password=PASSWORD, company_name=company, tax_id=uscc(next(_tax_ids)))
        user.raw_phone = phone
        return user

    return make


@pytest.fixture
def buyer(make_buyer):
    return make_buyer()


@pytest.fixture
def buyer_client(buyer):
    return client_for(buyer)


@pytest.fixture
def make_batch(make_user, reviewer):
    """Credited actions (yesterday, Asia/Shanghai) certified into a batch: `grams` split over `actions` rows."""
    from backend.actions.models import Action
    from backend.offsets.inventory import batch_create

    def make(grams=200_000, actions=4, methodology="metro_ride", days_ago=1):
        resident = make_user()
        day = timezone.localdate() - timedelta(days=days_ago)
        when = timezone.make_aware(timezone.datetime.combine(day, timezone.datetime.min.time())) + timedelta(hours=9)
        share, rest = divmod(grams, actions)
        Action.objects.bulk_create(
            Action(
                resident=resident,
                methodology=methodology,
                occurred_at=when,
                status=Action.Status.CREDITED,
                source=Action.Source.SELF_REPORT,
                grams=share + (rest if i == 0 else 0),
                points=1,
            )
            for i in range(actions)
        )
        return batch_create(methodology=methodology, period_start=day, period_end=day, created_by=reviewer)

    return make
