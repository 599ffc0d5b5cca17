"""A whole redemption as one PostgreSQL statement (`rewards_redeem`, rewards/migrations/0004, calling
`ledger_points_spend`, ledger migration 0009): it writes what the step-by-step path (`_authorise`, used on SQLite
and in a ledger backfill) writes, the ledger transaction's content hash included; every refusal rolls the whole
statement back, in autocommit (the API) and nested in a caller's transaction (a savepoint), the hot row's last
guarded UPDATE included; a refusal still answers a replay; a voucher code collision is retried with a new code."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from backend.ledger.models import LedgerTransaction, LotConsumption, PointsLot, Posting
from backend.ledger.services.posting import _content_hash
from rewards import redemption, services
from rewards.models import Merchant, Reward, RewardLimitUsage, Voucher
from tests.conftest import client_for, requires_postgres
from tests.rewards.helpers import assert_rewards_invariants, balance, give_points, hold_total, redeem

pytestmark = requires_postgres


def _written_nothing(resident, reward_id: int, stock: int | None, points: int, claimed: int = 0) -> None:
    assert not Voucher.objects.filter(resident=resident).exists()
    assert list(RewardLimitUsage.objects.filter(resident=resident).values_list("count", flat=True)) == (
        [claimed] if claimed else []
    )
    assert not LedgerTransaction.objects.filter(source_type="voucher").exists()
    assert not LotConsumption.objects.exists()
    assert balance(resident) == points and hold_total() == 0
    assert Reward.objects.get(pk=reward_id).stock == stock


def _hold(voucher_id: int) -> LedgerTransaction:
    return LedgerTransaction.objects.get(idempotency_key=f"voucher:{voucher_id}:hold")


@pytest.mark.django_db(transaction=True)
def test_it_writes_what_the_ledger_would(resident, shop, reward_factory):
    """The hold transaction: kind, key, source, reason (non-ASCII title), postings, lots soonest expiry first and
    the content hash of `hold_content`; the response shows the reward's and the merchant's fields."""
    reward = reward_factory(shop[0], points_cost=150, stock=3, title_zh='热门奖励 «咖啡» "双份" 😀', title_en="Hot")
    give_points(resident, 100)
    give_points(resident, 100, months=24)
    response = redeem(client_for(resident), reward.pk)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["reward"] == {"id": reward.pk, "title_zh": reward.title_zh, "title_en": "Hot"}
    merchant = Merchant.objects.get(pk=shop[0].pk)
    assert body["merchant"] == {
        "id": merchant.pk,
        "name_zh": merchant.name_zh,
        "name_en": merchant.name_en,
        "address": merchant.address,
    }
    voucher = Voucher.objects.get(code=body["code"])
    assert (body["points_cost"], body["status"]) == (150, "issued")
    assert voucher.expires_at - voucher.issued_at == timedelta(days=reward.voucher_validity_days)
    txn = _hold(voucher.pk)
    reason = f"Reward: {reward.title_zh}"
    assert (txn.kind, txn.reason, txn.source_type, txn.source_id) == ("points_spend", reason, "voucher", voucher.pk)
    content = services.hold_content(resident_id=resident.pk, points=150, reward_id=reward.pk, voucher_id=voucher.pk)
    assert txn.content_hash == _content_hash(content)
    postings = list(Posting.objects.filter(transaction=txn).order_by("id").values_list("account__key", "amount"))
    assert postings == [(f"resident:{resident.pk}:points", -150), ("system:redemption_hold", 150)]
    assert sorted(LotConsumption.objects.filter(transaction=txn).values_list("amount", flat=True)) == [50, 100]
    assert PointsLot.objects.filter(account__key=f"resident:{resident.pk}:points", remaining=0).count() == 1
    assert (voucher.status, voucher.stock_taken, voucher.points_cost) == ("issued", True, 150)
    assert Reward.objects.get(pk=reward.pk).stock == 2 and balance(resident) == 50 and hold_total() == 150
    assert_rewards_invariants()


@pytest.mark.django_db(transaction=True)
def test_the_step_by_step_path_writes_the_same(make_user, shop, reward_factory, monkeypatch):
    """Where the one statement is not used (SQLite, a ledger backfill), `_authorise` writes the same rows: the same
    voucher fields (limit period key included), the same ledger transaction (kind, reason, content hash, postings),
    the same lots consumed and limit claim, so both paths are cancelled, captured and verified alike."""
    reward = reward_factory(shop[0], points_cost=150, stock=4, title_zh="双份咖啡", limit_count=3, limit_period="week")
    written = {}
    for path in ("one_statement", "step_by_step"):
        resident = make_user()
        give_points(resident, 100)
        give_points(resident, 100, months=24)
        if path == "step_by_step":
            monkeypatch.setattr(redemption, "ledger_backfilling", lambda: True)
            monkeypatch.setattr(redemption.locking, "redeem_in_one_statement", None)  # not called on this path
        voucher, created = services.reward_redeem(resident=resident, reward_id=reward.pk, idempotency_key="k")
        assert created
        txn = _hold(voucher.pk)
        content = services.hold_content(resident_id=resident.pk, points=150, reward_id=reward.pk, voucher_id=voucher.pk)
        assert txn.content_hash == _content_hash(content), path
        row = Voucher.objects.filter(pk=voucher.pk).values(
            "status", "points_cost", "stock_taken", "limit_period_key", "face_value_minor", "currency", "merchant_id"
        )[0]
        fresh = Voucher.objects.get(pk=voucher.pk)
        assert (fresh.expires_at, fresh.issued_at, fresh.code) == (voucher.expires_at, voucher.issued_at, voucher.code)
        written[path] = (
            row,
            (txn.kind, txn.reason, txn.source_type),
            sorted(LotConsumption.objects.filter(transaction=txn).values_list("amount", flat=True)),
            list(Posting.objects.filter(transaction=txn).order_by("id").values_list("amount", flat=True)),
            RewardLimitUsage.objects.get(reward=reward, resident=resident).count,
        )
    assert written["one_statement"] == written["step_by_step"]
    assert written["one_statement"][0]["limit_period_key"] == services.locking.limit_period_key("week", timezone.now())
    assert Reward.objects.get(pk=reward.pk).stock == 2
    assert_rewards_invariants()


REFUSALS = {
    "insufficient_points": ("insufficient_points", 409),
    "no_points_account": ("insufficient_points", 409),
    "limit": ("reward_limit_reached", 409),
    "out_of_stock": ("reward_out_of_stock", 409),
    "paused": ("reward_not_available", 409),
    "merchant_suspended": ("reward_not_available", 409),
    "not_yet": ("reward_not_available", 409),
    "over": ("reward_not_available", 409),
    "other_district": ("reward_not_available", 409),
    "unknown_reward": ("not_found", 404),
}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("refusal", sorted(REFUSALS))
def test_a_refusal_writes_nothing_in_autocommit(resident, shop, reward_factory, refusal):
    """Each refusal, before the claim or after it, rolls back the voucher, the limit claim, the ledger transaction,
    the balance and the lots: the statement was its own transaction."""
    points = 0 if refusal == "no_points_account" else 100
    if points:
        give_points(resident, points)
    now = timezone.now()
    fields = {"points_cost": 500 if refusal == "insufficient_points" else 10, "limit_count": 1, "limit_period": "day"}
    fields["stock"] = 0 if refusal == "out_of_stock" else 5
    fields["valid_from"] = now + timedelta(days=1) if refusal == "not_yet" else now - timedelta(1)
    if refusal == "over":
        fields["valid_until"] = now - timedelta(seconds=1)
    if refusal == "other_district":
        fields["district"] = "370203" if resident.district_id != "370203" else "370202"
    reward = reward_factory(shop[0], **fields)
    if refusal == "paused":
        Reward.objects.filter(pk=reward.pk).update(status=Reward.Status.PAUSED)
    if refusal == "merchant_suspended":
        Merchant.objects.filter(pk=shop[0].pk).update(status=Merchant.Status.SUSPENDED)
    claimed = 1 if refusal == "limit" else 0
    if claimed:  # today's one redemption is already claimed
        today = services.locking.limit_period_key("day", timezone.now())
        RewardLimitUsage.objects.create(reward=reward, resident=resident, period_key=today, count=1)
    reward_id = 2**62 if refusal == "unknown_reward" else reward.pk
    with pytest.raises(services.ApplicationError) as refused:
        services.reward_redeem(resident=resident, reward_id=reward_id, idempotency_key="k1")
    assert (refused.value.get_codes(), refused.value.status_code) == REFUSALS[refusal]
    _written_nothing(resident, reward.pk, fields["stock"], points, claimed)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("change", ["last_item_taken", "paused"])
def test_the_hot_rows_update_refuses_after_everything_else_was_written(resident, shop, reward_factory, change):
    """Another transaction takes the last item (or pauses the reward) while holding its row lock: the statement
    reads the reward as available, writes the voucher, the limit claim and the ledger spend, then waits on the hot
    row; when the other commits, its guarded UPDATE takes nothing, so it refuses and all of it rolls back."""
    give_points(resident, 100)
    reward = reward_factory(shop[0], points_cost=10, stock=1, limit_count=1, limit_period="ever")
    locked, release = threading.Event(), threading.Event()

    def other():
        try:
            with transaction.atomic():
                if change == "paused":
                    Reward.objects.filter(pk=reward.pk).update(status=Reward.Status.PAUSED)
                else:
                    Reward.objects.filter(pk=reward.pk).update(stock=0)
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    t = threading.Thread(target=other)
    t.start()
    assert locked.wait(10)
    threading.Timer(0.5, release.set).start()  # commit once the redemption waits on the row
    started = time.monotonic()
    with pytest.raises(services.ApplicationError) as refused:
        services.reward_redeem(resident=resident, reward_id=reward.pk, idempotency_key="k1")
    t.join(10)
    assert time.monotonic() - started >= 0.4  # it did wait on the hot row
    assert refused.value.get_codes() == "reward_out_of_stock"
    _written_nothing(resident, reward.pk, 0 if change == "last_item_taken" else 1, 100)


@pytest.mark.django_db(transaction=True)
def test_a_refusal_answers_a_replay_of_the_same_key(resident, shop, reward_factory):
    """The reward ran out (and then was paused) after the first redemption: the same key again still answers the
    first voucher, in the same statement's look-up; another key is refused."""
    give_points(resident, 100)
    reward = reward_factory(shop[0], points_cost=10, stock=1)
    first, created = services.reward_redeem(resident=resident, reward_id=reward.pk, idempotency_key="k1")
    assert created
    again, created = services.reward_redeem(resident=resident, reward_id=reward.pk, idempotency_key="k1")
    assert (again.pk, created) == (first.pk, False)
    Reward.objects.filter(pk=reward.pk).update(status=Reward.Status.PAUSED)
    again, created = services.reward_redeem(resident=resident, reward_id=reward.pk, idempotency_key="k1")
    assert (again.pk, created) == (first.pk, False)
    with pytest.raises(services.ApplicationError) as refused:
        services.reward_redeem(resident=resident, reward_id=reward.pk, idempotency_key="k1", body={"other": 1})
    assert refused.value.get_codes() == "idempotency_key_reused"
    with pytest.raises(services.ApplicationError) as refused:
        services.reward_redeem(resident=resident, reward_id=reward.pk, idempotency_key="k2")
    assert refused.value.get_codes() == "reward_not_available"
    assert Voucher.objects.count() == 1 and balance(resident) == 90


@pytest.mark.django_db
def test_nested_in_a_transaction_a_refusal_leaves_it_usable(resident, shop, reward_factory):
    """Inside a caller's atomic block the statement runs in a savepoint: a refusal rolls back only its own
    writes, and the caller's transaction goes on (the next redemption in it succeeds)."""
    give_points(resident, 100)
    poor = reward_factory(shop[0], points_cost=500, stock=5)
    fine = reward_factory(shop[0], points_cost=30, stock=5)
    with transaction.atomic():
        with pytest.raises(services.ApplicationError):
            services.reward_redeem(resident=resident, reward_id=poor.pk, idempotency_key="a")
        voucher, created = services.reward_redeem(resident=resident, reward_id=fine.pk, idempotency_key="b")
    assert created and voucher.pk and Voucher.objects.filter(resident=resident).count() == 1
    assert balance(resident) == 70 and Reward.objects.get(pk=poor.pk).stock == 5
    assert Reward.objects.get(pk=fine.pk).stock == 4


@pytest.mark.django_db(transaction=True)
def test_a_voucher_code_collision_is_retried_with_a_new_code(make_user, shop, reward_factory, monkeypatch):
    """The claim's ON CONFLICT DO NOTHING also meets the code's unique index: no replay is found for the key, so
    the service tries again with a fresh code; the first voucher is untouched."""
    first_resident, resident = make_user(), make_user()
    for user in (first_resident, resident):
        give_points(user, 100)
    reward = reward_factory(shop[0], points_cost=10, stock=5)
    taken = redeem(client_for(first_resident), reward.pk).json()["code"]
    codes = iter([taken, "NEWCXDE23456"])
    monkeypatch.setattr(redemption, "voucher_code_new", lambda: next(codes))
    voucher, created = services.reward_redeem(resident=resident, reward_id=reward.pk, idempotency_key="k")
    assert created and voucher.code == "NEWCXDE23456"
    assert Voucher.objects.get(code=taken).resident_id == first_resident.pk
    assert Voucher.objects.filter(resident=resident).count() == 1 and balance(resident) == 90
    assert Reward.objects.get(pk=reward.pk).stock == 3
    assert_rewards_invariants()


@pytest.mark.django_db(transaction=True)
def test_a_resident_without_a_district_cannot_redeem_a_district_reward(make_user, shop, reward_factory):
    """`district IS DISTINCT FROM NULL`: a resident with no district is refused a district-only reward."""
    resident = make_user()
    type(resident).objects.filter(pk=resident.pk).update(district=None)
    resident.refresh_from_db()
    give_points(resident, 100)
    reward = reward_factory(shop[0], points_cost=10, stock=5, district="370202")
    with pytest.raises(services.ApplicationError) as refused:
        services.reward_redeem(resident=resident, reward_id=reward.pk, idempotency_key="k")
    assert refused.value.get_codes() == "reward_not_available"
    _written_nothing(resident, reward.pk, 5, 100)


@pytest.mark.django_db
def test_the_spend_function_takes_lots_as_the_python_spend_does():
    """ledger_points_spend (a migration, frozen) repeats LOTS_CONSUME's choice of lots: the two must agree on
    which lots are open, or a redemption and a Python spend would consume different points."""
    from backend.ledger.services.lots import LOTS_CONSUME

    with connection.cursor() as cur:
        cur.execute("SELECT prosrc FROM pg_proc WHERE proname = 'ledger_points_spend'")
        (source,) = cur.fetchone()
    predicate = "expired_at IS NULL AND remaining > 0 AND expires_at >"
    assert predicate in LOTS_CONSUME and predicate in source
    assert "ORDER BY expires_at, id FOR UPDATE" in LOTS_CONSUME and "ORDER BY expires_at, id FOR UPDATE" in source
