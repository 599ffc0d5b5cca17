"""Issue 17 (ingestion): processing an action is a heap-only update that writes no index entry (migration 0010).

The resident is resolved at submission, no index of the action table mentions `status` (the review queue is a
partial index on `needs_review`, which the database keeps equal to the review statuses; the reconciler finds
its work through the batches not processed yet), and the table leaves room on each page for the update."""

import json
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.test import TestCase
from django.utils import timezone

from backend.actions.models import Action, IngestBatch
from backend.actions.services import actions_reconcile, binding_create
from backend.actions.tasks import process_batch
from tests.actions.helpers import PARTNER_URL, ride, signed_headers, signed_post, wait_for_a_lock_wait
from tests.conftest import requires_postgres

CARD = "HOT-0001"


def submit(api, partner, items, *, process=True):
    """A signed batch; with process=False it is stored but never enqueued (as with the broker down)."""
    if process:
        response = signed_post(api, partner.pk, partner.secret, {"actions": items})
    else:
        body = json.dumps({"actions": items}).encode()
        with TestCase.captureOnCommitCallbacks(execute=False):
            headers = signed_headers(partner.pk, partner.secret, body)
            response = api.generic("POST", PARTNER_URL, body, content_type="application/json", **headers)
    assert response.status_code == 202, response.content
    return response.json()["results"]


@requires_postgres
@pytest.mark.django_db
def test_no_index_of_the_action_table_mentions_status_and_pages_leave_room():
    """Any index on `status` (in its columns or its condition) makes every processing update rewrite every index."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'actions_action'")
        indexes = dict(cursor.fetchall())
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = 'actions_action'")
        options = cursor.fetchone()[0]
    assert not [name for name, definition in indexes.items() if "status" in definition], indexes
    assert "fillfactor=30" in options


@requires_postgres
@pytest.mark.django_db
def test_processing_a_batch_is_a_heap_only_update_of_each_action(api, partner, resident):
    binding_create(resident=resident, kind="transit_card", identifier=CARD)
    now = timezone.now()
    rides = [
        ride(f"hot-{i}", identifier=CARD, at=now - timedelta(hours=2, minutes=20 * i), distance_km="4", duration_s=900)
        for i in range(40)
    ]
    submit(api, partner, rides, process=False)
    assert set(Action.objects.values_list("status", "resident_id")) == {("received", resident.id)}

    # The backend's pending counters (PostgreSQL 15 may still hold earlier transactions' counts there: deltas).
    before = _update_counters()
    process_batch(IngestBatch.objects.get().id)
    after = _update_counters()
    updated, hot = after[0] - before[0], after[1] - before[1]
    assert Action.objects.filter(status__in=["credited", "capped"]).count() == 40
    assert updated == 40
    assert hot == updated


def _update_counters() -> tuple[int, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(n_tup_upd), 0), coalesce(sum(n_tup_hot_upd), 0) FROM pg_stat_xact_user_tables"
            " WHERE relname = 'actions_action'"
        )
        return tuple(int(v) for v in cursor.fetchone())


@pytest.mark.django_db
def test_resident_resolved_at_submission_and_a_late_binding_still_counts(api, partner, resident, make_user):
    binding_create(resident=resident, kind="transit_card", identifier=CARD)
    submit(api, partner, [ride("bound-1", identifier=CARD), ride("late-1", identifier="LATE-0001")], process=False)
    stored = dict(Action.objects.values_list("external_id", "resident_id"))
    if connection.vendor == "postgresql":  # the quick start's SQLite leaves it to the pipeline
        assert stored == {"bound-1": resident.id, "late-1": None}
    late = make_user()
    binding_create(resident=late, kind="transit_card", identifier="LATE-0001")  # bound before processing
    process_batch(IngestBatch.objects.get().id)
    assert dict(Action.objects.values_list("external_id", "resident_id")) == {"bound-1": resident.id, "late-1": late.id}
    assert set(Action.objects.values_list("status", flat=True)) == {"credited"}


@pytest.mark.django_db
def test_needs_review_is_kept_equal_to_the_review_statuses_by_the_database(api, partner, resident):
    binding_create(resident=resident, kind="transit_card", identifier=CARD)
    submit(api, partner, [ride("r-1", identifier=CARD)])
    action = Action.objects.get()
    assert (action.status, action.needs_review) == ("credited", False)
    with pytest.raises(IntegrityError), transaction.atomic():
        Action.objects.filter(pk=action.pk).update(status="flagged")
    with pytest.raises(IntegrityError), transaction.atomic():
        Action.objects.filter(pk=action.pk).update(needs_review=True)


@pytest.mark.django_db
def test_batches_are_closed_when_processed_and_the_reconciler_finds_the_open_ones(api, partner, resident):
    binding_create(resident=resident, kind="transit_card", identifier=CARD)
    submit(api, partner, [ride("done-1", identifier=CARD)])
    submit(api, partner, [ride("done-1", identifier=CARD)])  # all duplicates: nothing to process
    submit(api, partner, [ride("open-1", identifier=CARD, minutes_ago=90)], process=False)
    batches = list(IngestBatch.objects.order_by("id"))
    assert [b.accepted for b in batches] == [1, 0, 1]
    assert [b.processed_at is None for b in batches] == [False, False, True]  # processed, nothing to, open
    open_batch = batches[2]

    assert actions_reconcile(older_than=timedelta(seconds=-60)) == 1
    open_batch.refresh_from_db()
    assert open_batch.processed_at is not None
    assert set(Action.objects.values_list("status", flat=True)) == {"credited"}
    assert actions_reconcile(older_than=timedelta(seconds=-60)) == 0  # nothing left open


@pytest.mark.django_db
def test_a_claimed_action_reopens_its_batch(api, partner, resident, monkeypatch):
    """Binding a card puts its unclaimed actions back to `received`; if their processing is never enqueued, the
    reconciler must still find them."""
    from backend.actions import links

    submit(api, partner, [ride("unbound-1", identifier="CLAIM-0001")])
    assert Action.objects.get().status == "unclaimed"
    assert IngestBatch.objects.get().processed_at is not None

    monkeypatch.setattr(links, "actions_process", lambda **kwargs: {})  # the claim's processing is lost
    binding_create(resident=resident, kind="transit_card", identifier="CLAIM-0001")
    assert Action.objects.get().status == "received"
    assert IngestBatch.objects.get().processed_at is None

    assert actions_reconcile(older_than=timedelta(seconds=-60)) == 1
    assert Action.objects.get().status == "credited"


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_closing_a_batch_never_overrides_a_claim_that_reopened_it(api, partner, resident):
    """A worker closes a batch ("none of its actions received") while a card binding, not yet committed, puts one
    of its unclaimed actions back to `received` and reopens it. The close must not win: the batch would stay
    closed with a `received` action that the reconciler (which reads open batches only) never finds again."""
    import threading

    from django.db import connections

    from backend.actions.pipeline.process import batches_close

    submit(api, partner, [ride("unbound-2", identifier="CLAIM-0002")])
    action = Action.objects.get()
    assert action.status == "unclaimed"
    batch = IngestBatch.objects.get()
    IngestBatch.objects.filter(pk=batch.pk).update(processed_at=None)  # another chunk of it still in flight

    claimed, release = threading.Event(), threading.Event()

    def claim():  # what binding_create does to the batch, held open until released
        try:
            with transaction.atomic():
                Action.objects.filter(pk=action.pk).update(status=Action.Status.RECEIVED, reason="")
                IngestBatch.objects.filter(pk=batch.pk).update(processed_at=None)
                claimed.set()
                assert release.wait(30)
        finally:
            connections.close_all()

    def close():
        try:
            with transaction.atomic():
                batches_close(batch_ids=[batch.pk])
        finally:
            connections.close_all()

    claimer = threading.Thread(target=claim)
    claimer.start()
    assert claimed.wait(30)
    closer = threading.Thread(target=close)
    closer.start()
    wait_for_a_lock_wait("the close never waited for the claim")  # for the claim's lock on the batch row
    release.set()
    claimer.join(30)
    closer.join(30)

    batch.refresh_from_db()
    assert Action.objects.get().status == "received"
    assert batch.processed_at is None  # still open: the reconciler will find the received action
