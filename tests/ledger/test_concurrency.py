"""Races against the real PostgreSQL: threads behind a barrier, each on its own connection."""

import threading

import pytest
from django.db import connection

from backend.core.errors import ApplicationError
from backend.ledger.models import Account, LedgerTransaction
from backend.ledger.services import Leg, action_credits_post_bulk, ledger_post, points_spend
from tests.conftest import requires_postgres
from tests.ledger.helpers import assert_ledger_invariants, credit

pytestmark = [requires_postgres, pytest.mark.django_db(transaction=True)]
THREADS = 50


def run_threads(target, n=THREADS):
    barrier = threading.Barrier(n)
    results, errors = [None] * n, []

    def run(i):
        try:
            barrier.wait()
            results[i] = target(i)
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results, errors


@pytest.mark.parametrize("attempt", range(3))
@pytest.mark.parametrize("path", ["single", "bulk"])
def test_fifty_threads_posting_one_key_create_one_transaction(attempt, path):
    c = credit(77, points=10, key=f"race-{path}-{attempt}")

    def post(_i):
        if path == "bulk":
            return action_credits_post_bulk(credits=[c])[c.idempotency_key]
        return ledger_post(
            kind="transfer",
            reason="race",
            source_type="test",
            source_id=1,
            idempotency_key=c.idempotency_key,
            postings=[Leg("system:points_issuance", -10), Leg("resident:77:points", 10)],
        )

    results, errors = run_threads(post)
    assert errors == []
    assert len(set(results)) == 1
    assert LedgerTransaction.objects.filter(idempotency_key=c.idempotency_key).count() == 1
    assert Account.objects.get(key="resident:77:points").balance == 10
    assert_ledger_invariants()


@pytest.mark.parametrize("attempt", range(3))
def test_fifty_threads_crediting_and_spending_one_account_never_go_negative(attempt):
    resident = 500 + attempt
    action_credits_post_bulk(credits=[credit(resident, points=20)])

    def work(i):
        if i % 2:
            action_credits_post_bulk(credits=[credit(resident, points=10, key=f"c-{attempt}-{i}")])
            return ("credit", 10)
        try:
            points_spend(
                resident_id=resident,
                points=15,
                idempotency_key=f"s-{attempt}-{i}",
                reason="race",
                source_type="test",
                source_id=i,
            )
            return ("spend", 15)
        except ApplicationError as exc:
            return ("refused", exc.get_codes())

    results, errors = run_threads(work)
    assert errors == []
    assert {n for kind, n in results if kind == "refused"} <= {"insufficient_points"}
    credited = 20 + sum(n for kind, n in results if kind == "credit")
    spent = sum(n for kind, n in results if kind == "spend")
    assert all(kind in ("credit", "spend", "refused") for kind, _ in results)
    assert spent > 0
    assert Account.objects.get(key=f"resident:{resident}:points").balance == credited - spent >= 0
    assert_ledger_invariants()
