"""The payout provider interface (settlement builds on it) and the money reward fund account."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest
from django.db import IntegrityError, transaction

from backend.core.errors import ApplicationError
from backend.ledger.services import Leg, account_spec, ledger_post
from backend.offsets.payouts import (
    PayoutError,
    RecordingPayoutProvider,
    StripeConnectTransferProvider,
    payout_provider,
)
from tests.conftest import free_port


def test_recording_provider_pays_once_per_idempotency_key():
    provider = RecordingPayoutProvider()
    args = {"amount": 1200, "currency": "CNY", "destination": "acct_1", "transfer_group": "settlement-7"}
    first = provider.transfer(**args, idempotency_key="settlement:7")
    again = provider.transfer(**args, idempotency_key="settlement:7")
    assert first == again and provider.paid_total == 1200 and len(provider.calls) == 2
    provider.fail_next = PayoutError("network", transient=True)
    with pytest.raises(PayoutError):
        provider.transfer(**args, idempotency_key="settlement:8")
    assert provider.paid_total == 1200


def test_configured_provider_is_loaded_from_settings(settings):
    settings.OFFSET_PAYOUT_PROVIDER = "backend.offsets.payouts.RecordingPayoutProvider"
    assert isinstance(payout_provider(), RecordingPayoutProvider)


@pytest.fixture
def fake_connect(settings):
    """A stand-in for Stripe's /v1/transfers (localstripe has no Connect): records each request."""
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append({"path": self.path, "headers": dict(self.headers), "form": parse_qs(body.decode())})
            status, reply = (
                (402, {"error": {"type": "invalid_request_error", "message": "no such destination"}})
                if "acct_missing" in body.decode()
                else (200, {"id": "tr_1", "object": "transfer", "amount": 1200, "currency": "cny"})
            )
            payload = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{server.server_port}"
    settings.STRIPE_SECRET_KEY = "sk_test_connect"
    yield seen
    server.shutdown()
    server.server_close()


def test_stripe_connect_transfer_sends_group_destination_and_idempotency_key(fake_connect):
    transfer = StripeConnectTransferProvider().transfer(
        amount=1200,
        currency="CNY",
        destination="acct_1",
        transfer_group="42",
        idempotency_key="settlement:42",
        metadata={"settlement_id": 42},
    )
    assert (transfer.id, transfer.amount, transfer.currency) == ("tr_1", 1200, "CNY")
    (request,) = fake_connect
    assert request["path"] == "/v1/transfers"
    assert request["headers"]["Idempotency-Key"] == "settlement:42"
    form = request["form"]
    assert form["amount"] == ["1200"] and form["currency"] == ["cny"] and form["destination"] == ["acct_1"]
    assert form["transfer_group"] == ["42"] and form["metadata[settlement_id]"] == ["42"]
    with pytest.raises(PayoutError) as failure:
        StripeConnectTransferProvider().transfer(
            amount=1, currency="CNY", destination="acct_missing", transfer_group="43", idempotency_key="s:43"
        )
    assert failure.value.transient is False


def test_reward_fund_is_a_floored_money_account_per_currency():
    spec = account_spec("system:reward_fund:CNY")
    assert (spec.unit, spec.currency, spec.floored) == ("money", "CNY", True)
    assert account_spec("system:reward_fund").unit == "points"  # the points account of the same name is unchanged


@pytest.mark.django_db
def test_reward_fund_never_goes_below_zero(reference_data):
    ledger_post(
        kind="transfer",
        reason="sale",
        source_type="test",
        source_id=1,
        idempotency_key="fund-in",
        postings=[Leg("system:payment_clearing:CNY", -500), Leg("system:reward_fund:CNY", 500)],
    )
    with pytest.raises(ApplicationError) as short:
        ledger_post(
            kind="transfer",
            reason="payable",
            source_type="test",
            source_id=2,
            idempotency_key="fund-out",
            postings=[Leg("system:reward_fund:CNY", -501), Leg("merchant:1:money:CNY", 501)],
        )
    assert short.value.get_codes() == "insufficient_funds"
    from backend.ledger.models import Account

    with pytest.raises(IntegrityError), transaction.atomic():
        Account.objects.filter(key="system:reward_fund:CNY").update(balance=-1)
