"""A refund that arrives after merchant settlement spent the money: the refund always completes (certificate
revoked, serials back, order refunded); what the floored reward fund cannot cover is booked to the reward fund
deficit (`system:reward_fund_deficit:CNY`, a debit balance), which the next payments repay before the fund grows
again. Merchant payables keep their rule (never funded below zero, never clawed back). Also: a Stripe event that
keeps failing ends `failed` (admin) after a bounded number of attempts instead of being retried forever."""

import threading
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.models import Sum
from django.test import override_settings
from django.utils import timezone

from backend.ledger.models import Account, LedgerTransaction, Posting
from backend.offsets import settlement
from backend.offsets.models import Certificate, CertificationBatch, MerchantPayable, OffsetOrder, StripeEvent
from backend.offsets.payouts import RecordingPayoutProvider
from backend.offsets.services import stripe_event_process, stripe_events_retry
from tests.conftest import client_for, requires_postgres
from tests.offsets.helpers import assert_offsets_invariants, deliver, fund_balance, intent_event, refund_event
from tests.rewards.helpers import give_points, redeem

pytestmark = requires_postgres

DEFICIT = "system:reward_fund_deficit:CNY"
NEXT_WEEK = timedelta(days=8)


def deficit() -> int:
    """What the reward fund owes (fen, positive): minus the deficit account's postings (a debit balance)."""
    return -(Posting.objects.filter(account__key=DEFICIT).aggregate(s=Sum("amount"))["s"] or 0)


def merchant_money(merchant) -> int:
    account = Account.objects.filter(key=f"merchant:{merchant.pk}:money:CNY")
    return account.values_list("balance", flat=True).first() or 0


def assert_fund_reconciles():
    """The fund's net position (balance minus deficit) is what the orders and payables say, computed from the
    offsets tables alone: paid in - refunded - funded payables. The deficit is never over-repaid."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT coalesce(sum(amount_fen), 0),"
            " coalesce(sum(amount_fen) FILTER (WHERE status = 'refunded'), 0)"
            " FROM offsets_offsetorder WHERE payment_txn_id IS NOT NULL"
        )
        paid_in, refunded = cur.fetchone()
    funded = MerchantPayable.objects.filter(status__in=["funded", "settled"]).aggregate(s=Sum("amount_minor"))["s"] or 0
    assert deficit() >= 0
    assert fund_balance() == 0 or deficit() == 0  # money in the fund with a deficit open: it was not repaid first
    assert fund_balance() - deficit() == paid_in - refunded - funded


def scraped(name: str, **labels) -> float:
    from rest_framework.test import APIClient

    from tests.core.test_metrics import sample

    with override_settings(METRICS_TOKEN="scrape-token"):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION="Bearer scrape-token")
        return sample(client.get("/metrics").content.decode(), name, **labels)


@pytest.fixture
def capture(resident, resident_client, reward_factory):
    """capture(merchant, staff, face_value): a voucher redeemed at the counter (its payable follows)."""

    def run(merchant, staff, face_value):
        reward = reward_factory(merchant, points_cost=10, face_value_minor=face_value)
        give_points(resident, 10)
        response = redeem(resident_client, reward.pk)
        assert response.status_code == 201, response.json()
        done = staff.client.post(f"/api/v1/merchant/vouchers/{response.json()['code']}/redeem")
        assert done.status_code == 200, done.json()

    return run


@pytest.fixture
def pay(api, localstripe, make_batch, make_buyer):
    """pay(kg) -> a paid order: reserved through the API, its PaymentIntent confirmed at localstripe, the signed
    payment_intent.succeeded delivered to the webhook (localstripe's own deliveries go nowhere in these tests)."""
    batch = make_batch(grams=2_000_000)
    client = client_for(make_buyer())

    def run(kg, *, deliver_success=True):
        response = client.post("/api/v1/offsets/orders", {"quantity_kg": kg, "batch": batch.id}, format="json")
        assert response.status_code == 201, response.json()
        order = OffsetOrder.objects.get(id=response.json()["order"]["id"])
        assert localstripe.confirm(order.payment_intent_id).status == "succeeded"
        if deliver_success:
            assert deliver(api, intent_event("payment_intent.succeeded", order)).status_code == 200
            order.refresh_from_db()
            assert order.status == OffsetOrder.Status.PAID
        return order

    return run


@pytest.fixture
def spent(pay, shop, capture):
    """A buyer paid 435 fen (100 kg at 43.50 CNY/t) into the fund; a 400 fen voucher was captured and funded,
    and the week's settlement paid the merchant: 35 fen left in the fund."""
    merchant, staff = shop
    order = pay(100)
    assert order.amount_fen == 435 and fund_balance() == 435
    settlement.merchant_stripe_account_set(merchant_id=merchant.pk, stripe_account_id="acct_1ShopRefund")
    capture(merchant, staff, 400)
    provider = RecordingPayoutProvider()
    assert settlement.settlements_run(provider=provider, now=timezone.now() + NEXT_WEEK) == {"created": 1, "paid": 1}
    assert provider.paid_total == 400 and fund_balance() == 35 and merchant_money(merchant) == 0
    return order, merchant, provider


def end_state(order, merchant):
    order.refresh_from_db()
    batch = CertificationBatch.objects.get(id=order.batch_id)
    return {
        "order": order.status,
        "certificate": Certificate.objects.get(order=order).status,
        "inventory": (batch.available_kg, batch.reserved_kg, batch.sold_kg),
        "fund": fund_balance(),
        "deficit": deficit(),
        "merchant_money": merchant_money(merchant),
        "payables": sorted(MerchantPayable.objects.values_list("status", flat=True)),
        "refund_transactions": LedgerTransaction.objects.filter(idempotency_key=f"offset-order:{order.id}:refund")
        .values_list("id", flat=True)
        .count(),
    }


REFUNDED = {
    "order": OffsetOrder.Status.REFUNDED,
    "certificate": Certificate.Status.REVOKED,
    "inventory": (1900, 0, 0),
    "fund": 0,
    "deficit": 400,  # 435 refunded, 35 from the fund, 400 the fund owes
    "merchant_money": 0,
    "payables": ["settled"],
    "refund_transactions": 1,
}


@pytest.mark.django_db(transaction=True)
def test_refund_after_settlement_spent_the_fund_completes_and_books_the_shortfall(api, spent):
    order, merchant, provider = spent

    first = refund_event(order)
    assert deliver(api, first).status_code == 200

    assert StripeEvent.objects.get(event_id=first["id"]).outcome == "refunded_shortfall"
    assert end_state(order, merchant) == REFUNDED
    assert order.refund_shortfall_fen == 400
    # The refund's money posting: clearing gets the whole 435 back, 35 from the fund, 400 to the deficit.
    refund = LedgerTransaction.objects.get(idempotency_key=f"offset-order:{order.id}:refund")
    legs = dict(refund.postings.values_list("account__key", "amount"))
    assert legs == {"system:payment_clearing:CNY": 435, "system:reward_fund:CNY": -35, DEFICIT: -400}
    assert provider.paid_total == 400  # the merchant keeps what it was paid
    assert scraped("offsets_reward_fund_deficit_minor", currency="CNY") == 400
    call_command("ledger_verify", verbosity=0)
    assert_offsets_invariants()
    assert_fund_reconciles()

    # The same event again, and the same refund under another event id: nothing changes.
    assert deliver(api, first).status_code == 200
    again = refund_event(order)
    assert deliver(api, again).status_code == 200
    assert StripeEvent.objects.get(event_id=again["id"]).outcome == "duplicate_refunded"
    assert end_state(order, merchant) == REFUNDED
    call_command("ledger_verify", verbosity=0)
    assert_fund_reconciles()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("repeat", range(3))
def test_refund_events_processed_in_parallel_reach_the_same_state(spent, repeat):
    order, merchant, _ = spent
    # Stripe may send the refund twice under different ids; each may also be delivered twice.
    # Recorded, not processed yet (as if the enqueues were lost), then five workers race to apply them.
    events = [refund_event(order), refund_event(order), refund_event(order)]
    for evt in events:
        StripeEvent.objects.create(event_id=evt["id"], type=evt["type"], payload=evt)
    ids = [events[0]["id"], events[0]["id"], events[1]["id"], events[2]["id"], events[2]["id"]]
    barrier = threading.Barrier(len(ids))
    errors = []

    def work(event_id):
        try:
            barrier.wait()
            stripe_event_process(event_id=event_id)
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert end_state(order, merchant) == REFUNDED
    outcomes = sorted(StripeEvent.objects.values_list("outcome", flat=True))
    assert outcomes.count("refunded_shortfall") + outcomes.count("duplicate_refunded") == 3
    call_command("ledger_verify", verbosity=0)
    assert_offsets_invariants()
    assert_fund_reconciles()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("repeat", range(2))
def test_refunds_payments_and_funding_at_once_keep_the_fund_reconciled(api, spent, pay, shop, capture, repeat):
    """A refund with a shortfall, two payments and a funding sweep race: no deadlock, the deficit is never
    repaid twice or below zero, and the fund reconciles with the orders and payables whatever the order."""
    order, merchant, _ = spent
    capture(merchant, shop[1], 300)  # waits: 35 fen in the fund
    payments = [pay(100, deliver_success=False), pay(100, deliver_success=False)]
    events = [refund_event(order)] + [intent_event("payment_intent.succeeded", o) for o in payments]
    for evt in events:
        StripeEvent.objects.create(event_id=evt["id"], type=evt["type"], payload=evt)
    barrier = threading.Barrier(len(events) + 1)
    errors = []

    def work(job):
        try:
            barrier.wait()
            job()
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    jobs = [lambda e=e: stripe_event_process(event_id=e["id"]) for e in events] + [settlement.payables_fund]
    threads = [threading.Thread(target=work, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    settlement.payables_fund()  # whatever the race left waiting that the fund can now cover

    assert errors == []
    assert sorted(StripeEvent.objects.values_list("outcome", flat=True))[-1] in ("refunded", "refunded_shortfall")
    # 3 x 435 paid in, 435 refunded, 400 + 300 funded: 170 left and nothing owed, in any order.
    assert (fund_balance(), deficit()) == (170, 0)
    assert MerchantPayable.objects.filter(status="waiting_funds").count() == 0
    call_command("ledger_verify", verbosity=0)
    assert_offsets_invariants()
    assert_fund_reconciles()


@pytest.mark.django_db(transaction=True)
def test_refund_before_payment_with_a_spent_fund_ends_the_same(api, spent, pay):
    """Out of order: with the deficit open, a second order refunded in order and a third whose refund arrives
    before its payment end the same way (the payment repays the deficit, the refund books it again)."""
    order, _, _ = spent
    assert deliver(api, refund_event(order)).status_code == 200
    assert (fund_balance(), deficit()) == (0, 400)

    in_order = pay(100)
    assert (fund_balance(), deficit()) == (35, 0)  # its 435 repaid the 400 first
    assert deliver(api, refund_event(in_order)).status_code == 200
    assert (fund_balance(), deficit()) == (0, 400)

    out_of_order = pay(100, deliver_success=False)
    refund, paid = refund_event(out_of_order), intent_event("payment_intent.succeeded", out_of_order)
    assert deliver(api, refund).status_code == 200
    assert deliver(api, paid).status_code == 200
    assert StripeEvent.objects.get(event_id=refund["id"]).outcome == "refund_before_payment"
    assert StripeEvent.objects.get(event_id=paid["id"]).outcome == "paid_then_refunded"
    for again in (refund, paid, refund_event(out_of_order), intent_event("payment_intent.succeeded", out_of_order)):
        assert deliver(api, again).status_code == 200
    for refunded in (in_order, out_of_order):
        refunded.refresh_from_db()
        assert refunded.status == OffsetOrder.Status.REFUNDED and refunded.refund_shortfall_fen == 400
        assert Certificate.objects.get(order=refunded).status == Certificate.Status.REVOKED
    assert (fund_balance(), deficit()) == (0, 400)
    call_command("ledger_verify", verbosity=0)
    assert_offsets_invariants()
    assert_fund_reconciles()


@pytest.mark.django_db(transaction=True)
def test_next_payments_repay_the_deficit_before_the_fund_grows(api, spent, pay, shop, capture, settings):
    order, merchant, _ = spent
    staff = shop[1]
    assert deliver(api, refund_event(order)).status_code == 200
    assert deficit() == 400
    capture(merchant, staff, 100)  # the fund is empty: this payable waits
    assert MerchantPayable.objects.filter(status="waiting_funds").count() == 1

    settings.OFFSET_MIN_AMOUNT_FEN = 1
    small = pay(50)  # 217 fen: all of it repays the deficit, nothing reaches the fund
    assert small.amount_fen == 217
    assert (deficit(), fund_balance()) == (183, 0)
    assert MerchantPayable.objects.filter(status="waiting_funds").count() == 1
    legs = dict(Posting.objects.filter(transaction_id=small.payment_txn_id).values_list("account__key", "amount"))
    assert legs == {"system:payment_clearing:CNY": -217, DEFICIT: 217}

    big = pay(100)  # 435 fen: 183 closes the deficit, 252 reach the fund and fund the waiting 100
    legs = dict(Posting.objects.filter(transaction_id=big.payment_txn_id).values_list("account__key", "amount"))
    assert legs == {"system:payment_clearing:CNY": -435, DEFICIT: 183, "system:reward_fund:CNY": 252}
    assert deficit() == 0
    assert MerchantPayable.objects.filter(status="waiting_funds").count() == 0
    assert fund_balance() == 152
    call_command("ledger_verify", verbosity=0)
    assert_offsets_invariants()
    assert_fund_reconciles()


@pytest.mark.django_db(transaction=True)
def test_fund_deficit_is_shown_in_the_admin(api, spent, make_user):
    from django.test import Client

    from tests.conftest import PASSWORD

    order, _, _ = spent
    assert deliver(api, refund_event(order)).status_code == 200
    admin = Client()
    user = make_user(role="admin")
    assert admin.login(username=user.raw_phone, password=PASSWORD)
    html = admin.get("/admin/offsets/offsetorder/").content.decode()
    assert "基金缺口：400 分" in html and "账本对账一致。" in html  # deficit 400 fen, the ledger reconciles (zh-hans)
    assert "400" in admin.get(f"/admin/offsets/offsetorder/{order.pk}/change/").content.decode()


# --- events that keep failing -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_an_event_that_keeps_failing_ends_failed_after_bounded_attempts(api, pay, monkeypatch, settings, make_user):
    from backend.offsets import events

    settings.STRIPE_EVENT_MAX_ATTEMPTS = 3
    order = pay(100)
    evt = refund_event(order)

    def broken(kind, obj):
        raise RuntimeError("boom")

    monkeypatch.setattr(events, "_apply", broken)
    StripeEvent.objects.create(event_id=evt["id"], type=evt["type"], payload=evt, received_at=timezone.now())
    for attempt in range(1, 4):
        with pytest.raises(RuntimeError):
            stripe_event_process(event_id=evt["id"])
        row = StripeEvent.objects.get(event_id=evt["id"])
        assert row.failed_attempts == attempt and "boom" in row.last_error
    assert row.failed_at is not None and row.processed_at is None and row.outcome == "failed"
    assert scraped("offsets_stripe_events_failed") == 1
    # No more automatic attempts: not by the beat sweep, not by the task, not by Stripe redelivering it.
    StripeEvent.objects.filter(event_id=evt["id"]).update(received_at=timezone.now() - timedelta(hours=1))
    assert stripe_events_retry() == 0
    assert stripe_event_process(event_id=evt["id"]) == "failed"
    assert deliver(api, evt).status_code == 200
    assert StripeEvent.objects.get(event_id=evt["id"]).failed_attempts == 3

    # Visible in the admin, and retried from there once the cause is fixed (through the service).
    monkeypatch.undo()
    from django.test import Client

    from tests.conftest import PASSWORD

    admin = Client()
    user = make_user(role="admin")
    assert admin.login(username=user.raw_phone, password=PASSWORD)
    listing = admin.get("/admin/offsets/stripeevent/?failed=yes").content.decode()
    assert evt["id"] in listing and "boom" in listing
    admin.post("/admin/offsets/stripeevent/", {"action": "retry_failed", "_selected_action": [evt["id"]]})
    row = StripeEvent.objects.get(event_id=evt["id"])
    assert row.processed_at is not None and row.failed_at is None and row.outcome == "refunded"
    order.refresh_from_db()
    assert order.status == OffsetOrder.Status.REFUNDED
    assert_offsets_invariants()


@pytest.mark.django_db(transaction=True)
def test_failures_below_the_limit_are_retried_by_the_sweep(pay, monkeypatch, settings):
    from backend.offsets import events

    settings.STRIPE_EVENT_MAX_ATTEMPTS = 5
    order = pay(100)
    evt = refund_event(order)
    monkeypatch.setattr(events, "_apply", lambda kind, obj: (_ for _ in ()).throw(RuntimeError("transient")))
    StripeEvent.objects.create(event_id=evt["id"], type=evt["type"], payload=evt)
    with pytest.raises(RuntimeError):
        stripe_event_process(event_id=evt["id"])
    monkeypatch.undo()
    StripeEvent.objects.filter(event_id=evt["id"]).update(received_at=timezone.now() - timedelta(hours=1))
    assert stripe_events_retry() == 1  # eager here: the sweep's task applies it
    row = StripeEvent.objects.get(event_id=evt["id"])
    assert (row.outcome, row.failed_attempts, row.failed_at) == ("refunded", 1, None)
