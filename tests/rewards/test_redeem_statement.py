"""The write half of a redemption as one PostgreSQL statement (`rewards_redeem`, rewards/migrations/0004, calling
`ledger_points_spend`, ledger migration 0008): it writes what the step-by-step path (`_authorise`) writes, the
ledger transaction's content hash included; every refusal rolls the whole statement back, in autocommit (the
API) and nested in a caller's transaction (a savepoint); a voucher code collision is retried with a new code."""

import pytest
from django.db import transaction
from django.utils import timezone

from backend.ledger.models import LedgerTransaction, LotConsumption, PointsLot, Posting
from backend.ledger.services import Leg, points_spend_content
from backend.ledger.services.posting import _content_hash, _content_text, _generic_content
from rewards import services
from rewards.models import Reward, RewardLimitUsage, Voucher
from tests.conftest import client_for, requires_postgres
from tests.rewards.helpers import assert_rewards_invariants, balance, give_points, hold_total, redeem

pytestmark = requires_postgres


def _written_nothing(resident, reward_id: int, stock: int | None, points: int, claimed: int) -> None:
    assert not Voucher.objects.filter(resident=resident).exists()
    assert list(RewardLimitUsage.objects.filter(resident=resident).values_list("count", flat=True)) == (
        [claimed] if claimed else []
    )
    assert not LedgerTransaction.objects.filter(source_type="voucher").exists()
    assert not LotConsumption.objects.exists()
    assert balance(resident) == points and hold_total() == 0
    assert Reward.objects.get(pk=reward_id).stock == stock


@pytest.mark.parametrize("reason", ['Reward: 奖励 «café» "quoted" \\ 😀', "x" * 300])
def test_the_content_text_splits_around_the_source_id(reason):
    """sha256(prefix + id + suffix) is the content hash `points_spend` stores for that source id (non-ASCII,
    quotes, backslashes, emoji and an over-long reason included)."""
    prefix, suffix = points_spend_content(resident_id=7, points=150, reason=reason, source_type="voucher")
    for source_id in (1, 42, 9_007_199_254_740_993):
        legs = [Leg("resident:7:points", -150), Leg("system:redemption_hold", 150)]
        payload = _generic_content(
            kind="points_spend", reason=reason, source_type="voucher", source_id=source_id, legs=legs
        )
        assert prefix + str(source_id) + suffix == _content_text(payload)
        assert prefix.isascii()


@pytest.mark.django_db(transaction=True)
def test_it_writes_what_the_ledger_would(resident, shop, reward_factory):
    """The hold transaction of the one-statement path: kind, key, source, reason, content hash and postings as
    `points_spend(..., source_type="voucher", source_id=voucher.pk)` writes them."""
    reward = reward_factory(shop[0], points_cost=150, stock=3, title_zh='热门奖励 «咖啡» "双份"')
    give_points(resident, 100)
    give_points(resident, 100, months=24)
    response = redeem(client_for(resident), reward.pk)
    assert response.status_code == 201, response.json()
    voucher = Voucher.objects.get(code=response.json()["code"])
    txn = LedgerTransaction.objects.get(source_type="voucher", source_id=voucher.pk)
    reason = f"Reward: {reward.title_zh}"
    legs = [Leg(f"resident:{resident.pk}:points", -150), Leg("system:redemption_hold", 150)]
    expected = _content_hash(
        _generic_content(kind="points_spend", reason=reason, source_type="voucher", source_id=voucher.pk, legs=legs)
    )
    assert (txn.kind, txn.idempotency_key, txn.reason) == ("points_spend", f"voucher:{voucher.pk}:hold", reason)
    assert txn.content_hash == expected
    postings = list(Posting.objects.filter(transaction=txn).order_by("id").values_list("account__key", "amount"))
    assert postings == [(f"resident:{resident.pk}:points", -150), ("system:redemption_hold", 150)]
    assert sorted(LotConsumption.objects.filter(transaction=txn).values_list("amount", flat=True)) == [50, 100]
    assert PointsLot.objects.filter(account__key=f"resident:{resident.pk}:points", remaining=0).count() == 1
    assert (voucher.status, voucher.stock_taken, voucher.points_cost) == ("issued", True, 150)
    assert Reward.objects.get(pk=reward.pk).stock == 2 and balance(resident) == 50 and hold_total() == 150
    assert_rewards_invariants()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("refusal", ["insufficient_points", "no_points_account", "limit", "out_of_stock", "paused"])
def test_a_refusal_writes_nothing_in_autocommit(resident, shop, reward_factory, monkeypatch, refusal):
    """Each step's refusal, the last one (the stock) included, rolls back the voucher, the limit claim, the ledger
    transaction, the balance and the lots: the statement was its own transaction."""
    points = 0 if refusal == "no_points_account" else 100
    if points:
        give_points(resident, points)
    cost = 500 if refusal == "insufficient_points" else 10
    stock = 0 if refusal == "out_of_stock" else 5
    reward = reward_factory(shop[0], points_cost=cost, stock=stock, limit_count=1, limit_period="day")
    claimed = 1 if refusal == "limit" else 0
    if claimed:  # today's one redemption is already claimed
        today = services.locking.limit_period_key("day", timezone.now())
        RewardLimitUsage.objects.create(reward=reward, resident=resident, period_key=today, count=1)
    read = services.reward_for_redemption(reward_id=reward.pk)
    if refusal == "out_of_stock":
        read.stock = 1  # read before the last item went: the statement's guarded UPDATE decides
    if refusal == "paused":  # paused after the redemption read it
        Reward.objects.filter(pk=reward.pk).update(status=Reward.Status.PAUSED)
    monkeypatch.setattr(services, "reward_for_redemption", lambda reward_id: read)
    expected = {
        "insufficient_points": "insufficient_points",
        "no_points_account": "insufficient_points",
        "limit": "reward_limit_reached",
        "out_of_stock": "reward_out_of_stock",
        "paused": "reward_out_of_stock",
    }[refusal]
    with pytest.raises(services.ApplicationError) as refused:
        services.reward_redeem(resident=resident, reward_id=reward.pk, idempotency_key="k1")
    assert refused.value.get_codes() == expected and refused.value.status_code == 409
    _written_nothing(resident, reward.pk, stock, points, claimed)


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
    monkeypatch.setattr(services, "voucher_code_new", lambda: next(codes))
    voucher, created = services.reward_redeem(resident=resident, reward_id=reward.pk, idempotency_key="k")
    assert created and voucher.code != taken
    assert Voucher.objects.get(code=taken).resident_id == first_resident.pk
    assert Voucher.objects.filter(resident=resident).count() == 1 and balance(resident) == 90
    assert Reward.objects.get(pk=reward.pk).stock == 3
    assert_rewards_invariants()


@pytest.mark.django_db(transaction=True)
def test_the_step_by_step_path_writes_the_same(make_user, shop, reward_factory, monkeypatch):
    """Where the one statement is not used (SQLite, a ledger backfill), `_authorise` writes the same rows: the same
    voucher fields, the same ledger transaction (kind, key pattern, reason, content-hash definition, postings) and
    the same lots consumed, so both paths can be cancelled, captured and verified alike."""
    reward = reward_factory(shop[0], points_cost=150, stock=4, title_zh="双份咖啡", limit_count=3, limit_period="week")
    written = {}
    for path in ("one_statement", "step_by_step"):
        resident = make_user()
        give_points(resident, 100)
        give_points(resident, 100, months=24)
        if path == "step_by_step":
            monkeypatch.setattr(services, "ledger_backfilling", lambda: True)
            monkeypatch.setattr(services.locking, "redeem_write", None)  # not called on this path
        voucher, created = services.reward_redeem(resident=resident, reward_id=reward.pk, idempotency_key="k")
        assert created
        txn = LedgerTransaction.objects.get(idempotency_key=f"voucher:{voucher.pk}:hold")
        reason = f"Reward: {reward.title_zh}"
        legs = [Leg(f"resident:{resident.pk}:points", -150), Leg("system:redemption_hold", 150)]
        content = _generic_content(
            kind="points_spend", reason=reason, source_type="voucher", source_id=voucher.pk, legs=legs
        )
        assert txn.content_hash == _content_hash(content), path
        row = Voucher.objects.filter(pk=voucher.pk).values(
            "status", "points_cost", "stock_taken", "limit_period_key", "face_value_minor", "currency"
        )[0]
        written[path] = (
            row,
            (txn.kind, txn.reason, txn.source_type),
            sorted(LotConsumption.objects.filter(transaction=txn).values_list("amount", flat=True)),
            list(Posting.objects.filter(transaction=txn).order_by("id").values_list("amount", flat=True)),
            RewardLimitUsage.objects.get(reward=reward, resident=resident).count,
        )
    assert written["one_statement"] == written["step_by_step"]
    assert Reward.objects.get(pk=reward.pk).stock == 2
    assert_rewards_invariants()
