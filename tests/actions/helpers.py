"""Signed partner requests and fixtures' building blocks for the actions tests."""

import json
import time
import uuid
from datetime import timedelta

from django.utils import timezone

from backend.partners.services import signature_compute

PARTNER_URL = "/api/v1/partner/actions"


def signed_headers(partner_id, secret, body: bytes, *, timestamp=None, nonce=None, signature=None) -> dict:
    timestamp = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or uuid.uuid4().hex
    signature = signature or signature_compute(secret, timestamp, nonce, body)
    return {
        "HTTP_X_PARTNER_ID": str(partner_id),
        "HTTP_X_TIMESTAMP": timestamp,
        "HTTP_X_NONCE": nonce,
        "HTTP_X_SIGNATURE": signature,
    }


def signed_post(client, partner_id, secret, payload, **kwargs):
    """POST a signed batch. Tests wrap themselves in a transaction, where on-commit hooks would never fire:
    run them as the real commit would (tasks run in-process in unit tests)."""
    from django.test import TestCase

    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    with TestCase.captureOnCommitCallbacks(execute=True):
        return client.generic(
            "POST",
            PARTNER_URL,
            body,
            content_type="application/json",
            **signed_headers(partner_id, secret, body, **kwargs),
        )


def signed_get(client, partner_id, secret, path, **kwargs):
    return client.get(path, **signed_headers(partner_id, secret, b"", **kwargs))


def ride(
    external_id, *, identifier="CARD-0001", methodology="bus_ride", kind="transit_card", minutes_ago=60, at=None, **data
):
    occurred = at or (timezone.now() - timedelta(minutes=minutes_ago))
    return {
        "external_id": external_id,
        "methodology": methodology,
        "subject": {"kind": kind, "identifier": identifier},
        "occurred_at": occurred.isoformat(),
        "data": data or {"distance_km": "10", "duration_s": 1800},
    }


LINKS_URL = "/api/v1/partner/links"


def signed_request(client, method, path, partner_id, secret, payload, **kwargs):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return client.generic(
        method, path, body, content_type="application/json", **signed_headers(partner_id, secret, body, **kwargs)
    )


def link_card(resident, partner, *, kind="transit_card", identifier="3100-0000-0001"):
    """The linking flow end to end: the resident asks for a link code, the partner confirms it (signed).
    Returns the partner's response (201 {"binding_id", "claimed"})."""
    from django.test import TestCase
    from rest_framework.test import APIClient

    from backend.partners.services import partner_subject_kinds_set
    from tests.conftest import client_for

    if kind not in (partner.subject_kinds or []):
        partner_subject_kinds_set(partner_id=partner.pk, subject_kinds=[*(partner.subject_kinds or []), kind])
        partner.refresh_from_db()
    code = client_for(resident).post("/api/v1/me/link-codes", {"kind": kind}, format="json")
    assert code.status_code == 201, code.content
    payload = {"code": code.json()["code"], "subject": {"kind": kind, "identifier": identifier}}
    with TestCase.captureOnCommitCallbacks(execute=True):
        return signed_request(APIClient(), "POST", LINKS_URL, partner.pk, partner.secret, payload)


def wait_for_a_lock_wait(what: str, timeout: float = 15.0, *, sessions: int = 1) -> None:
    """Return once `sessions` PostgreSQL sessions of this test's database wait on a lock (the interleaving a
    race test needs); fail with `what` if they do not within `timeout` seconds. (Only this database: the other
    pytest-xdist worker runs its own race tests on the same cluster.)"""
    import pytest
    from django.db import connection

    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            if cursor.fetchone()[0] >= sessions:
                return
            time.sleep(0.02)
    pytest.fail(what)


def self_report_in_flight(action, *, holding, go) -> None:
    """What self_report_create's transaction does for `action`: its daily cap row locked, then its pending
    credit posted. Sets `holding` once the cap row is locked and posts only after `go` (a lock-order test lets
    the other path run in between)."""
    from django.db import transaction

    from backend.actions.pipeline import shanghai_day
    from backend.actions.pipeline.caps import _lock_cap_usage
    from backend.ledger.services import ActionCredit, action_credits_post_bulk

    with transaction.atomic():
        _lock_cap_usage({(action.resident_id, action.methodology, shanghai_day(action.occurred_at))})
        holding.set()
        assert go.wait(30)
        credit = ActionCredit(
            idempotency_key=f"action:{action.id}",
            resident_id=action.resident_id,
            methodology=action.methodology,
            grams=10,
            points=1,
            reason="lock order",
            source_type="action",
            source_id=action.id,
            effective_at=action.occurred_at,
            pending=True,
        )
        action_credits_post_bulk(credits=[credit])
