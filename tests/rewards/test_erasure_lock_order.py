"""Erasure runs every domain's step in one transaction, so it must take its locks in the order every other write
path takes them: live vouchers and their limit-usage rows, then daily cap rows, then ledger accounts, then
reward rows (backend/accounts/erasure.py). Each test makes a concurrent write path hold the lock erasure used to
take after the resident's ledger accounts, and lets it go on only once erasure is waiting: the old order
deadlocked (PostgreSQL's "deadlock detected", a 500 of DELETE /api/v1/me or of the other request)."""

import threading
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection, connections
from django.utils import timezone

from backend.actions.models import Action
from tests.actions.helpers import self_report_in_flight, wait_for_a_lock_wait
from tests.actions.test_lock_order import capped_self_report_methodology
from tests.actions.test_self_report import PNG, sample_data
from tests.conftest import requires_postgres
from tests.rewards.helpers import assert_rewards_invariants, give_points

pytestmark = [requires_postgres, pytest.mark.django_db(transaction=True)]


def in_thread(target, errors: list) -> threading.Thread:
    def run():
        try:
            target()
        except BaseException as exc:  # reported by the test
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_erasure_withdrawing_two_days_of_self_reports_does_not_deadlock_with_a_self_report(
    seeded, resident, settings, tmp_path
):
    """Two waiting self-reports on two days. Erasure gave back the first day's cap and reversed its credit (the
    resident's accounts) before it locked the second day's cap row, which a self-report of that day held while
    it posted its own credit (the resident's accounts)."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from backend.accounts.services import user_erase
    from backend.actions.services import self_report_create

    settings.MEDIA_ROOT = tmp_path
    methodology = capped_self_report_methodology()
    yesterday, today = timezone.now() - timedelta(hours=25), timezone.now() - timedelta(hours=1)
    for at in (yesterday, today):  # in id order: yesterday's first, as the old loop went
        waiting = self_report_create(
            resident=resident,
            methodology_code=methodology.code,
            occurred_at=at,
            data=sample_data(methodology),
            evidence=SimpleUploadedFile("photo.png", PNG, content_type="image/png"),
        )
        assert waiting.status == "pending_review" and waiting.credited_quantity > 0
    other = Action.objects.create(
        source=Action.Source.SELF_REPORT,
        resident=resident,
        methodology=methodology.code,
        occurred_at=today,
        data=sample_data(methodology),
        status=Action.Status.RECEIVED,
    )
    holding, go, errors = threading.Event(), threading.Event(), []

    pipeline = in_thread(lambda: self_report_in_flight(other, holding=holding, go=go), errors)
    assert holding.wait(30)
    erasure = in_thread(lambda: user_erase(user=resident), errors)
    wait_for_a_lock_wait("erasure never waited for today's cap row")
    go.set()
    pipeline.join(30)
    erasure.join(30)

    assert not errors, errors
    assert set(Action.objects.filter(resident=resident).exclude(pk=other.pk).values_list("reason", flat=True)) == {
        "withdrawn_erasure"
    }
    call_command("ledger_verify", verbosity=0)


def test_erasure_cancelling_two_vouchers_does_not_deadlock_with_a_redemption(make_user, shop, reward_factory):
    """Two live vouchers, the second of a reward limited per day. Erasure cancelled the first (the resident's
    accounts, then its reward's row) before it locked the second voucher's limit row, which a redemption of
    the second reward held while it waited for the resident's accounts."""
    from backend.accounts.services import user_erase
    from rewards.models import Reward, Voucher
    from rewards.services import reward_redeem

    resident = make_user()
    first = reward_factory(shop[0], points_cost=10, stock=5)
    limited = reward_factory(shop[0], points_cost=10, stock=5, limit_count=2, limit_period="day")
    give_points(resident, 100)
    for reward in (first, limited):  # in id order: the first reward's voucher first, as the old loop went
        reward_redeem(resident=resident, reward_id=reward.pk, idempotency_key=f"live-{reward.pk}")
    assert Voucher.objects.filter(resident=resident, status="issued").count() == 2

    blocker = connections.create_connection("default")  # holds the first reward's row: erasure stops there
    blocker.set_autocommit(False)
    with blocker.cursor() as cursor:
        cursor.execute("SELECT id FROM rewards_reward WHERE id = %s FOR UPDATE", [first.pk])
    errors, outcomes = [], []

    def redeem_the_limited_reward():
        try:
            reward_redeem(resident=resident, reward_id=limited.pk, idempotency_key="during-erasure")
            outcomes.append("issued")
        except Exception as exc:  # a refusal is a fine outcome here; a deadlock is not
            if getattr(exc, "status_code", 500) >= 500:
                raise
            outcomes.append(exc.get_codes())

    try:
        erasure = in_thread(lambda: user_erase(user=resident), errors)
        wait_for_a_lock_wait("erasure never waited for the first reward's row")
        redemption = in_thread(redeem_the_limited_reward, errors)
        wait_for_a_lock_wait("the redemption never waited for erasure", sessions=2)
    finally:
        blocker.rollback()
        blocker.close()
    erasure.join(30)
    redemption.join(30)

    assert not errors, errors
    assert len(outcomes) == 1
    assert (
        Voucher.objects.filter(resident=resident, idempotency_key__startswith="live-", status="cancelled").count() == 2
    )
    assert Reward.objects.get(pk=first.pk).stock == 5
    assert_rewards_invariants()
    call_command("ledger_verify", verbosity=0)
    assert connection.vendor == "postgresql"
