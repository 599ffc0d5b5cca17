"""Races through the API against the real PostgreSQL: threads behind a barrier, each on its own connection.
After every race the ledger invariants (and the rewards' own) hold."""

import pytest
from django.core.management import call_command

from rewards.models import Reward, Voucher
from tests.conftest import client_for, requires_postgres
from tests.rewards.helpers import assert_rewards_invariants, balance, give_points, redeem, run_parallel

pytestmark = [requires_postgres, pytest.mark.django_db(transaction=True)]
RESIDENTS = 50
ROUNDS = 20


def test_fifty_residents_one_item_left_exactly_one_voucher_twenty_times(make_user, shop, reward_factory):
    merchant = shop[0]
    residents = [make_user() for _ in range(RESIDENTS)]  # reused by every round: registering is the slow part
    for r in residents:
        give_points(r, 10 * ROUNDS)
    clients = [client_for(r) for r in residents]
    for round_ in range(ROUNDS):
        reward = reward_factory(merchant, points_cost=10, stock=1)
        statuses = run_parallel(lambda i: redeem(clients[i], reward.pk).status_code, RESIDENTS)
        assert sorted(statuses) == [201] + [409] * (RESIDENTS - 1), (round_, statuses)
        assert Reward.objects.get(pk=reward.pk).stock == 0
        assert Voucher.objects.filter(reward=reward).count() == 1
    assert sum(balance(r) for r in residents) == RESIDENTS * 10 * ROUNDS - 10 * ROUNDS
    assert_rewards_invariants()
    call_command("ledger_verify", verbosity=0)


@pytest.mark.parametrize("attempt", range(3))
def test_points_for_one_reward_twenty_rewards_in_parallel_at_most_one(attempt, resident, shop, reward_factory):
    rewards = [reward_factory(shop[0], points_cost=100, stock=5) for _ in range(20)]
    give_points(resident, 100)
    client = client_for(resident)

    statuses = run_parallel(lambda i: redeem(client, rewards[i].pk).status_code, 20)

    assert sorted(statuses) == [201] + [409] * 19
    assert balance(resident) == 0
    assert sum(Reward.objects.filter(pk__in=[r.pk for r in rewards]).values_list("stock", flat=True)) == 99
    assert_rewards_invariants()


def test_fifty_requests_with_one_key_make_one_voucher(resident, shop, reward_factory):
    reward = reward_factory(shop[0], points_cost=10, stock=100)
    give_points(resident, 1000)
    client = client_for(resident)

    responses = run_parallel(lambda i: redeem(client, reward.pk, key="same-key"), 50)

    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["code"] for r in responses}) == 1
    assert Voucher.objects.count() == 1
    assert balance(resident) == 990 and Reward.objects.get(pk=reward.pk).stock == 99
    assert_rewards_invariants()


def test_limit_one_per_day_twenty_parallel_requests_one_voucher(resident, shop, reward_factory):
    reward = reward_factory(shop[0], points_cost=1, limit_count=1, limit_period="day")
    give_points(resident, 100)
    client = client_for(resident)
    statuses = run_parallel(lambda i: redeem(client, reward.pk).status_code, 20)
    assert sorted(statuses) == [201] + [409] * 19
    assert_rewards_invariants()


def test_cancel_and_capture_racing_one_wins(resident, shop, reward_factory):
    merchant, staff = shop
    reward = reward_factory(merchant, points_cost=10, stock=10)
    give_points(resident, 100)
    resident_client = client_for(resident)
    for _ in range(5):
        code = redeem(resident_client, reward.pk).json()["code"]
        staff_client = client_for(staff.user)

        def act(i, code=code):
            if i % 2:
                return resident_client.post(f"/api/v1/me/vouchers/{code}/cancel").status_code
            return staff_client.post(f"/api/v1/merchant/vouchers/{code}/redeem").status_code

        statuses = run_parallel(act, 10)
        assert statuses.count(200) == 1, statuses
    assert_rewards_invariants()


def test_expiry_on_a_real_worker_twice_returns_once(celery_worker, resident, shop, reward_factory):
    import time

    from django.utils import timezone

    from rewards.tasks import vouchers_expire

    reward = reward_factory(shop[0], points_cost=30, stock=4)
    give_points(resident, 100)
    client = client_for(resident)
    codes = [redeem(client, reward.pk).json()["code"] for _ in range(3)]
    Voucher.objects.filter(code__in=codes[:2]).update(expires_at=timezone.now())

    vouchers_expire.delay()
    vouchers_expire.delay()
    deadline = time.monotonic() + 60
    while Voucher.objects.filter(status="expired").count() < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)  # let the second run finish too

    assert Voucher.objects.filter(status="expired").count() == 2
    assert balance(resident) == 70 and Reward.objects.get(pk=reward.pk).stock == 3
    assert_rewards_invariants()
