"""The hot row's UPDATE sent together with the COMMIT (rewards.locking.stock_take_and_commit): taken and committed
in one round trip when it succeeds, nothing committed when it takes nothing, the ordinary guarded UPDATE when
nested in another atomic block."""

import threading

import pytest
from django.db import connection, transaction

from rewards import locking
from rewards.models import Merchant, Reward
from tests.conftest import requires_postgres


def _committed_stock(reward_id: int) -> int | None:
    """The stock as another connection sees it (what is committed)."""
    seen = []

    def look():
        try:
            seen.append(Reward.objects.values_list("stock", flat=True).get(pk=reward_id))
        finally:
            connection.close()

    t = threading.Thread(target=look)
    t.start()
    t.join(30)
    return seen[0]


def _address(merchant_id: int) -> str:
    return Merchant.objects.values_list("address", flat=True).get(pk=merchant_id)


@pytest.mark.django_db(transaction=True)
@requires_postgres
def test_the_item_is_taken_and_committed_with_the_transaction(shop, reward_factory):
    """Given a reward with 2 items, when an outermost atomic block writes and then takes one item, everything is
    committed by that one call: another connection sees the item gone before the block has even exited."""
    merchant = shop[0]
    reward = reward_factory(merchant, stock=2)
    with transaction.atomic():
        Merchant.objects.filter(pk=merchant.pk).update(address="written before the item")
        assert locking.stock_take_and_commit(reward_id=reward.pk) is True
        assert _committed_stock(reward.pk) == 1
    assert _address(merchant.pk) == "written before the item"
    assert Reward.objects.get(pk=reward.pk).stock == 1


@pytest.mark.django_db(transaction=True)
@requires_postgres
@pytest.mark.parametrize("state", ["none_left", "paused"])
def test_nothing_is_committed_when_no_item_is_taken(shop, reward_factory, state):
    """Given no item left (or a reward paused after the redemption read it), the UPDATE fails, PostgreSQL skips
    the COMMIT queued behind it, and the caller's rollback undoes what the transaction wrote before."""
    merchant = shop[0]
    reward = reward_factory(merchant, stock=0 if state == "none_left" else 3)
    if state == "paused":
        Reward.objects.filter(pk=reward.pk).update(status=Reward.Status.PAUSED)
    taken = []

    def redeem_like_the_service():
        with transaction.atomic():
            Merchant.objects.filter(pk=merchant.pk).update(address="must be rolled back")
            taken.append(locking.stock_take_and_commit(reward_id=reward.pk))
            raise LookupError  # what the service does: refuse, and the atomic block rolls back

    with pytest.raises(LookupError):
        redeem_like_the_service()
    assert taken == [False]
    assert _address(merchant.pk) != "must be rolled back"
    assert Reward.objects.get(pk=reward.pk).stock == (0 if state == "none_left" else 3)


@pytest.mark.django_db(transaction=True)
@requires_postgres
def test_nested_in_another_atomic_block_it_does_not_commit(shop, reward_factory):
    """Inside someone else's transaction it is the plain guarded UPDATE: the outer block decides, and its
    rollback gives the item back."""
    reward = reward_factory(shop[0], stock=1)
    seen = []

    def outer_transaction_that_rolls_back():
        with transaction.atomic():
            with transaction.atomic():
                seen.append(locking.stock_take_and_commit(reward_id=reward.pk))
            seen.append(_committed_stock(reward.pk))
            raise LookupError

    with pytest.raises(LookupError):
        outer_transaction_that_rolls_back()
    assert seen == [True, 1]  # taken inside, not committed (another connection still sees 1)
    assert Reward.objects.get(pk=reward.pk).stock == 1
