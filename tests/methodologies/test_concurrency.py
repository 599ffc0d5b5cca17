"""Exactly one active version under concurrent approvals, on the real PostgreSQL (threads + barrier)."""

import itertools
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from backend.methodologies import services
from backend.methodologies.models import MethodologyVersion
from tests.conftest import requires_postgres

pytestmark = [requires_postgres, pytest.mark.django_db(transaction=True)]


def in_review(author, start):
    draft = services.methodology_version_create_draft(code="bus_ride", author=author)
    services.methodology_version_update_draft(version_id=draft.id, actor=author, effective_from=start)
    return services.methodology_version_submit(version_id=draft.id, actor=author)


def race(calls):
    barrier = threading.Barrier(len(calls))
    outcomes = [None] * len(calls)

    def run(index, call):
        try:
            barrier.wait()
            outcomes[index] = call()
        except Exception as error:
            outcomes[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return outcomes


def assert_one_active_and_contiguous():
    versions = list(MethodologyVersion.objects.filter(methodology__code="bus_ride").order_by("number"))
    assert [v.status for v in versions].count("active") == 1
    in_force = sorted((v for v in versions if v.status in ("active", "retired")), key=lambda v: v.effective_from)
    for before, after in itertools.pairwise(in_force):
        assert before.effective_to == after.effective_from  # no gap, no overlap


@pytest.mark.parametrize("attempt", range(3))
def test_concurrent_approvals_of_two_versions_leave_one_active(make_user, attempt):
    author, first, second = (make_user(role="reviewer") for _ in range(3))
    now = timezone.now()
    v2 = in_review(author, now - timedelta(hours=2))
    v3 = in_review(author, now - timedelta(hours=1))
    outcomes = race(
        [
            lambda: services.methodology_version_approve(version_id=v2.id, actor=first, note="a"),
            lambda: services.methodology_version_approve(version_id=v3.id, actor=second, note="b"),
        ]
    )
    assert_one_active_and_contiguous()
    active = MethodologyVersion.objects.get(methodology__code="bus_ride", status="active")
    assert active.id == v3.id  # the later start always ends up in force
    errors = [o for o in outcomes if isinstance(o, Exception)]
    # Either both approvals succeeded (v2 then v3) or v3 won and v2 was refused as not forward-only.
    assert all(getattr(e, "default_code", "") == "conflict" for e in errors) and len(errors) <= 1


@pytest.mark.parametrize("attempt", range(3))
def test_concurrent_approvals_of_one_version_succeed_once(make_user, attempt):
    author, first, second = (make_user(role="reviewer") for _ in range(3))
    v2 = in_review(author, timezone.now() - timedelta(minutes=5))
    outcomes = race(
        [
            lambda: services.methodology_version_approve(version_id=v2.id, actor=first, note="a"),
            lambda: services.methodology_version_approve(version_id=v2.id, actor=second, note="b"),
        ]
    )
    assert sum(isinstance(o, MethodologyVersion) for o in outcomes) == 1
    assert_one_active_and_contiguous()
    assert v2.transitions.filter(to_status="approved").count() == 1


@pytest.mark.parametrize("attempt", range(3))
def test_beat_and_approval_racing_activate_once(make_user, attempt):
    author, approver = make_user(role="reviewer"), make_user(role="reviewer")
    v2 = in_review(author, timezone.now() - timedelta(minutes=5))
    outcomes = race(
        [
            lambda: services.methodology_version_approve(version_id=v2.id, actor=approver, note="ok"),
            lambda: services.versions_activate_due(),
            lambda: services.versions_activate_due(),
        ]
    )
    assert not [o for o in outcomes if isinstance(o, Exception)]
    assert_one_active_and_contiguous()
    assert v2.transitions.filter(to_status="active").count() == 1
