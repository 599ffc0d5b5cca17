"""Merchant settlement: a payable per captured voucher, funded from the reward fund oldest first (waiting when it
is short), weekly settlements paid once through the payout provider (twice, in parallel, after a crash), by hand
when the merchant has no connected account; ledger invariants after all of it."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from backend.core.errors import ApplicationError
from backend.ledger.models import Account
from backend.ledger.services import Leg, ledger_post
from backend.offsets import settlement
from backend.offsets.models import MerchantPayable, Settlement
from backend.offsets.payouts import PayoutError, RecordingPayoutProvider
from tests.conftest import requires_postgres
from tests.offsets.helpers import assert_offsets_invariants, fund_balance
from tests.rewards.helpers import give_points, redeem

pytestmark = requires_postgres

NEXT_WEEK = timedelta(days=8)


def money(merchant) -> int:
    account = Account.objects.filter(key=f"merchant:{merchant.pk}:money:CNY")
    return account.values_list("balance", flat=True).first() or 0


_fund_seq = iter(range(1, 10**9))


def fund(amount: int) -> None:
    """Money into the reward fund the way a paid offset order puts it there."""
    ledger_post(
        kind="transfer",
        reason="test: offset money",
        source_type="test",
        source_id=None,
        idempotency_key=f"test-fund:{next(_fund_seq)}:{timezone.now().timestamp()}",
        postings=[Leg("system:payment_clearing:CNY", -amount), Leg("system:reward_fund:CNY", amount)],
    )


@pytest.fixture
def capture(resident, resident_client, reward_factory):
    """capture(merchant, staff, face_value) -> voucher id, through the redeem and counter APIs."""

    def run(merchant, staff, face_value):
        reward = reward_factory(merchant, points_cost=10, face_value_minor=face_value)
        give_points(resident, 10)
        response = redeem(resident_client, reward.pk)
        assert response.status_code == 201, response.json()
        code = response.json()["code"]
        done = staff.client.post(f"/api/v1/merchant/vouchers/{code}/redeem")
        assert done.status_code == 200, done.json()
        return done.json()

    return run


def connected(merchant, account="acct_1TestShop"):
    settlement.merchant_stripe_account_set(merchant_id=merchant.pk, stripe_account_id=account)
    merchant.refresh_from_db()
    return merchant


def transfers(provider):
    return [c for c in provider.calls if "find" not in c]


# --- payables ----------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_captured_voucher_creates_one_funded_payable(shop, capture):
    merchant, staff = shop
    fund(5_000)

    capture(merchant, staff, 1_200)

    payable = MerchantPayable.objects.get()
    assert (payable.merchant_id, payable.amount_minor, payable.status) == (merchant.pk, 1_200, "funded")
    assert money(merchant) == 1_200 and fund_balance() == 3_800
    with pytest.raises(IntegrityError), transaction.atomic():  # one payable per voucher, whatever calls it
        MerchantPayable.objects.create(voucher_id=payable.voucher_id, merchant=merchant, amount_minor=1)
    assert settlement.payables_fund() == 0  # nothing waiting: a rerun changes nothing
    assert money(merchant) == 1_200
    assert_offsets_invariants()


@pytest.mark.django_db(transaction=True)
def test_reward_without_face_value_owes_nothing(shop, capture):
    merchant, staff = shop
    capture(merchant, staff, 0)
    assert MerchantPayable.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_short_fund_waits_oldest_first_and_is_funded_when_money_arrives(shop, capture):
    merchant, staff = shop
    fund(100)

    capture(merchant, staff, 800)  # more than the fund holds: waits
    capture(merchant, staff, 50)  # would fit, but never jumps the older one

    assert list(MerchantPayable.objects.order_by("id").values_list("status", flat=True)) == ["waiting_funds"] * 2
    assert money(merchant) == 0 and fund_balance() == 100
    assert settlement.outstanding_payables() == {"waiting_funds": 850}

    fund(760)
    assert settlement.payables_fund() == 2

    assert list(MerchantPayable.objects.order_by("id").values_list("status", flat=True)) == ["funded"] * 2
    assert money(merchant) == 850 and fund_balance() == 10
    assert_offsets_invariants()


@pytest.mark.django_db(transaction=True)
def test_waiting_payable_is_funded_by_a_paid_offset_order(shop, capture, api, localstripe, make_batch, buyer_client):
    """The money of a webhook-confirmed offset payment funds what waits (the payment enqueues the sweep)."""
    from backend.offsets.models import OffsetOrder
    from tests.offsets.helpers import deliver, intent_event

    merchant, staff = shop
    batch = make_batch(grams=200_000)
    response = buyer_client.post("/api/v1/offsets/orders", {"quantity_kg": 100, "batch": batch.id}, format="json")
    assert response.status_code == 201
    order = OffsetOrder.objects.get(id=response.json()["order"]["id"])
    capture(merchant, staff, order.amount_fen)
    assert MerchantPayable.objects.get().status == "waiting_funds"

    assert deliver(api, intent_event("payment_intent.succeeded", order)).status_code == 200

    assert MerchantPayable.objects.get().status == "funded"
    assert money(merchant) == order.amount_fen and fund_balance() == 0
    assert_offsets_invariants()


# --- settlements -------------------------------------------------------------------------------------------


def funded_payables(merchant, staff, capture, *amounts):
    fund(sum(amounts))
    for amount in amounts:
        capture(merchant, staff, amount)
    assert MerchantPayable.objects.filter(merchant=merchant, status="funded").count() == len(amounts)


@pytest.mark.django_db(transaction=True)
def test_settlement_paid_once_when_the_task_runs_twice(shop, capture, monkeypatch):
    from backend.offsets import tasks

    merchant, staff = connected(shop[0]), shop[1]
    funded_payables(merchant, staff, capture, 300, 700)
    MerchantPayable.objects.update(created_at=timezone.now() - NEXT_WEEK)  # captured in the week just ended
    provider = RecordingPayoutProvider()
    monkeypatch.setattr(settlement, "payout_provider", lambda: provider)

    first = tasks.settlements_run.delay().get()
    second = tasks.settlements_run.delay().get()

    assert first == {"created": 1, "paid": 1} and second == {"created": 0}
    s = Settlement.objects.get()
    assert (s.status, s.amount_minor, s.payable_count, s.transfer_id) == ("paid", 1_000, 2, "tr_fake_1")
    (call,) = transfers(provider)
    assert call["transfer_group"] == str(s.pk) and call["idempotency_key"] == f"settlement:{s.pk}"
    assert call["destination"] == "acct_1TestShop" and call["amount"] == 1_000
    assert money(merchant) == 0
    assert set(MerchantPayable.objects.values_list("status", "settlement_id")) == {("settled", s.pk)}
    assert settlement.outstanding_payables() == {}
    assert_offsets_invariants()


@pytest.mark.django_db(transaction=True)
def test_payables_of_the_current_week_wait_for_next_weeks_settlement(shop, capture):
    merchant, staff = connected(shop[0]), shop[1]
    funded_payables(merchant, staff, capture, 300)
    provider = RecordingPayoutProvider()

    assert settlement.settlements_run(provider=provider) == {"created": 0}
    assert settlement.settlements_run(provider=provider, now=timezone.now() + NEXT_WEEK)["paid"] == 1
    assert money(merchant) == 0


class SlowProvider(RecordingPayoutProvider):
    def transfer(self, **kwargs):
        time.sleep(0.5)
        return super().transfer(**kwargs)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("attempt", range(3))
def test_two_runners_at_once_pay_once(shop, capture, attempt):
    merchant, staff = connected(shop[0]), shop[1]
    funded_payables(merchant, staff, capture, 400, 600)
    provider = SlowProvider()  # the transfer takes a while: the second runner arrives while it is in flight
    barrier = threading.Barrier(2)
    results, errors = [], []
    later = timezone.now() + NEXT_WEEK

    def run():
        from django.db import connection

        try:
            barrier.wait()
            results.append(settlement.settlements_run(provider=provider, now=later))
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert sum(r.get("created", 0) for r in results) == 1
    assert sorted(k for r in results for k in r if k != "created") == ["in_progress", "paid"]
    assert len(transfers(provider)) == 1 and provider.paid_total == 1_000
    assert Settlement.objects.get().status == "paid"
    assert money(merchant) == 0
    assert_offsets_invariants()


class CrashAfterTransfer:
    """The transfer goes through at the provider, then the process dies before the bookkeeping commits."""

    def __init__(self, inner):
        self.inner = inner

    def transfer(self, **kwargs):
        self.inner.transfer(**kwargs)
        raise KeyboardInterrupt("worker killed after the transfer")


@pytest.mark.django_db(transaction=True)
def test_crash_after_the_transfer_is_retried_to_the_same_transfer(shop, capture):
    merchant, staff = connected(shop[0]), shop[1]
    funded_payables(merchant, staff, capture, 900)
    provider = RecordingPayoutProvider()
    later = timezone.now() + NEXT_WEEK

    with pytest.raises(KeyboardInterrupt):
        settlement.settlements_run(provider=CrashAfterTransfer(provider), now=later)

    s = Settlement.objects.get()
    assert s.status == "paying" and s.transfer_id == "" and money(merchant) == 900  # nothing booked
    assert settlement.settlements_run(provider=provider, now=later) == {"created": 0, "in_progress": 1}  # leased
    assert settlement.settlements_run(provider=provider, now=later + timedelta(hours=1)) == {"created": 0, "paid": 1}

    s.refresh_from_db()
    assert (s.status, s.transfer_id, s.attempts) == ("paid", "tr_fake_1", 2)
    assert len(provider.transfers) == 1 and provider.paid_total == 900
    assert {"find": str(s.pk)} in provider.calls  # the retry looked the transfer up first
    assert money(merchant) == 0
    assert_offsets_invariants()


@pytest.mark.django_db(transaction=True)
def test_crash_inside_the_bookkeeping_rolls_back_and_the_retry_pays_once(shop, capture, monkeypatch):
    merchant, staff = connected(shop[0]), shop[1]
    funded_payables(merchant, staff, capture, 250)
    provider = RecordingPayoutProvider()
    later = timezone.now() + NEXT_WEEK
    real_post = settlement.ledger_post

    def crash(**kwargs):
        real_post(**kwargs)
        raise RuntimeError("database connection lost before commit")

    monkeypatch.setattr(settlement, "ledger_post", crash)
    with pytest.raises(RuntimeError):
        settlement.settlement_pay(settlement_id=settlement.settlements_create(now=later)[0], provider=provider)
    monkeypatch.setattr(settlement, "ledger_post", real_post)
    assert money(merchant) == 250 and Settlement.objects.get().status == "paying"

    assert settlement.settlements_pay_due(provider=provider, now=later + timedelta(hours=1)) == {"paid": 1}
    assert len(provider.transfers) == 1 and money(merchant) == 0
    assert_offsets_invariants()


@pytest.mark.django_db(transaction=True)
def test_provider_error_releases_the_claim_and_the_next_run_pays(shop, capture):
    merchant, staff = connected(shop[0]), shop[1]
    funded_payables(merchant, staff, capture, 500)
    provider = RecordingPayoutProvider(fail_next=PayoutError("stripe unreachable", transient=True))
    later = timezone.now() + NEXT_WEEK

    assert settlement.settlements_run(provider=provider, now=later) == {"created": 1, "failed": 1}
    s = Settlement.objects.get()
    assert (s.status, s.last_error) == ("pending", "stripe unreachable")
    assert settlement.settlements_run(provider=provider, now=later) == {"created": 0, "paid": 1}
    assert money(merchant) == 0 and provider.paid_total == 500


@pytest.mark.django_db(transaction=True)
def test_merchant_without_connected_account_is_settled_by_hand(shop, capture, make_user):
    merchant, staff = shop
    funded_payables(merchant, staff, capture, 450)
    provider = RecordingPayoutProvider()
    later = timezone.now() + NEXT_WEEK

    assert settlement.settlements_run(provider=provider, now=later) == {"created": 1, "manual": 1}
    assert settlement.settlements_run(provider=provider, now=later) == {"created": 0}
    s = Settlement.objects.get()
    assert s.status == "manual" and provider.calls == [] and money(merchant) == 450
    connected(merchant)  # connecting later does not make a by-hand settlement transfer as well
    assert settlement.settlement_pay(settlement_id=s.pk, provider=provider) == "manual"

    admin_user = make_user(role="admin")
    with pytest.raises(ApplicationError) as missing:
        settlement.settlement_mark_paid_manually(settlement_id=s.pk, reference="  ", by=admin_user)
    assert missing.value.get_codes() == "reference_required"
    settlement.settlement_mark_paid_manually(settlement_id=s.pk, reference="ICBC 2026-11-30 #88", by=admin_user)
    with pytest.raises(ApplicationError) as twice:
        settlement.settlement_mark_paid_manually(settlement_id=s.pk, reference="again", by=admin_user)
    assert twice.value.get_codes() == "settlement_not_manual"

    s.refresh_from_db()
    assert (s.status, s.manual_reference, s.manual_paid_by_id) == ("paid", "ICBC 2026-11-30 #88", admin_user.pk)
    assert provider.calls == [] and money(merchant) == 0
    assert_offsets_invariants()


@pytest.mark.django_db(transaction=True)
def test_merchants_are_settled_apart(merchant_factory, capture):
    (a, a_staff), (b, b_staff) = merchant_factory(), merchant_factory()
    connected(a, "acct_1ShopA")
    funded_payables(a, a_staff, capture, 100, 200)
    funded_payables(b, b_staff, capture, 5_000)
    provider = RecordingPayoutProvider()

    outcome = settlement.settlements_run(provider=provider, now=timezone.now() + NEXT_WEEK)

    assert outcome == {"created": 2, "paid": 1, "manual": 1}
    by_merchant = {s.merchant_id: s for s in Settlement.objects.all()}
    assert (by_merchant[a.pk].amount_minor, by_merchant[a.pk].status) == (300, "paid")
    assert (by_merchant[b.pk].amount_minor, by_merchant[b.pk].status) == (5_000, "manual")
    (call,) = transfers(provider)
    assert (call["destination"], call["amount"]) == ("acct_1ShopA", 300)
    for s in by_merchant.values():
        assert set(s.payables.values_list("merchant_id", flat=True)) == {s.merchant_id}
    assert money(a) == 0 and money(b) == 5_000
    assert settlement.outstanding_payables() == {"settled": 5_000}
    assert_offsets_invariants()


def test_stripe_account_ids_are_validated():
    for bad in ("acct_", "cus_123", "acct_12 3", "acct_１２３", "acct_" + "x" * 300, "acct_1;drop"):
        with pytest.raises(ApplicationError) as err:
            settlement.stripe_account_validate(bad)
        assert err.value.get_codes() == "stripe_account_invalid"
    assert settlement.stripe_account_validate(" acct_1AbC ") == "acct_1AbC"
    assert settlement.stripe_account_validate("") == ""


@pytest.mark.django_db
def test_unknown_merchant_account_set_is_404():
    with pytest.raises(ApplicationError) as err:
        settlement.merchant_stripe_account_set(merchant_id=987654, stripe_account_id="acct_1X")
    assert err.value.get_codes() == "merchant_not_found" and err.value.status_code == 404


# --- admin -------------------------------------------------------------------------------------------------


def admin_client(user):
    from django.test import Client

    from tests.conftest import PASSWORD

    client = Client()
    assert client.login(username=user.raw_phone, password=PASSWORD)
    return client


@pytest.mark.django_db(transaction=True)
def test_admin_shows_payables_and_settlements_and_acts_through_services(
    merchant_factory, capture, make_user, monkeypatch
):
    (a, a_staff), (b, b_staff) = merchant_factory(), merchant_factory()
    connected(b, "acct_1ShopB")
    funded_payables(a, a_staff, capture, 300)
    funded_payables(b, b_staff, capture, 200)
    capture(a, a_staff, 800)  # the fund is empty now: waits
    later = timezone.now() + NEXT_WEEK
    settlement.settlements_create(now=later)
    a_settlement = Settlement.objects.get(merchant=a)
    b_settlement = Settlement.objects.get(merchant=b)
    settlement.settlement_pay(settlement_id=a_settlement.pk, provider=RecordingPayoutProvider())  # -> manual
    provider = RecordingPayoutProvider()
    monkeypatch.setattr(settlement, "payout_provider", lambda: provider)
    admin = admin_client(make_user(role="admin"))

    payables = admin.get("/admin/offsets/merchantpayable/")
    html = payables.content.decode()
    assert payables.status_code == 200 and "<svg" in html
    assert "未结商户应付款：1300 分" in html and "等待资金" in html  # outstanding payables, waiting for funds (zh-hans)
    orders = admin.get("/admin/offsets/offsetorder/").content.decode()
    assert "未结商户应付款：1300 分" in orders  # the chart is fed with the real payables
    listing = admin.get("/admin/offsets/settlement/").content.decode()
    assert "登记付款" in listing and "pay_now" in listing  # "record payment", zh-hans
    for name in ("merchantpayable", "settlement"):
        assert admin.get(f"/admin/offsets/{name}/add/").status_code == 403
    assert admin.post(f"/admin/offsets/settlement/{a_settlement.pk}/delete/").status_code == 403
    assert admin.get(f"/admin/offsets/settlement/{a_settlement.pk}/change/").status_code == 200

    # pay now (the connected merchant), twice: one transfer
    for _ in range(2):
        admin.post("/admin/offsets/settlement/", {"action": "pay_now", "_selected_action": [b_settlement.pk]})
    b_settlement.refresh_from_db()
    assert b_settlement.status == "paid" and len(transfers(provider)) == 1

    # record a payment by hand: a reference is required, unknown ids are 404, once only
    url = f"/admin/offsets/settlement/{a_settlement.pk}/mark-paid/"
    assert admin.get(url).status_code == 200
    assert admin.post(url, {"reference": ""}).status_code == 200
    assert admin.get("/admin/offsets/settlement/99999999/mark-paid/").status_code == 404
    assert admin.post(url, {"reference": "x" * 300}).status_code == 200  # too long: the form says so
    assert Settlement.objects.get(pk=a_settlement.pk).status == "manual"
    assert admin.post(url, {"reference": "ICBC #1"}).status_code == 302
    assert admin.post(url, {"reference": "ICBC #2"}).status_code == 200  # settlement_not_manual, shown
    a_settlement.refresh_from_db()
    assert (a_settlement.status, a_settlement.manual_reference) == ("paid", "ICBC #1")
    assert money(a) == 0 and money(b) == 0
    assert "未结商户应付款：800 分" in admin.get("/admin/offsets/settlement/").content.decode()
    assert_offsets_invariants()


@pytest.mark.django_db(transaction=True)
def test_reviewer_cannot_move_money_from_the_admin(shop, capture, make_user):
    merchant, staff = shop
    funded_payables(merchant, staff, capture, 300)
    (settlement_id,) = settlement.settlements_create(now=timezone.now() + NEXT_WEEK)
    settlement.settlement_pay(settlement_id=settlement_id, provider=RecordingPayoutProvider())
    reviewer = admin_client(make_user(role="reviewer"))

    listing = reviewer.get("/admin/offsets/settlement/")
    assert listing.status_code == 200 and "pay_now" not in listing.content.decode()
    url = f"/admin/offsets/settlement/{settlement_id}/mark-paid/"
    assert reviewer.post(url, {"reference": "ICBC #1"}).status_code == 403
    reviewer.post("/admin/offsets/settlement/", {"action": "pay_now", "_selected_action": [settlement_id]})
    assert Settlement.objects.get().status == "manual" and money(merchant) == 300
