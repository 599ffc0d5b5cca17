"""One lock order for daily cap rows and ledger accounts: cap usage first, accounts after.

The pipeline reserves a resident's cap before it posts the credit, and a self-report runs the pipeline inside
its own transaction, so it holds the cap row while it updates the resident's accounts. A review rejection used
to reverse the pending credit (accounts) before giving the cap back (the cap row): under the Locust mix a
self-report and a rejection of the same resident's action of the same day deadlocked, and PostgreSQL answered
one of them with a 500."""

import threading
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connections
from django.utils import timezone

from backend.actions.models import Action
from tests.actions.helpers import self_report_in_flight, wait_for_a_lock_wait
from tests.actions.test_self_report import PNG, sample_data
from tests.conftest import requires_postgres


def capped_self_report_methodology():
    from backend.methodologies.models import MethodologyVersion

    for version in MethodologyVersion.objects.filter(status="active", self_report_allowed=True).select_related(
        "methodology"
    ):
        if version.daily_cap:
            return version.methodology
    pytest.skip("no seeded methodology allows self-reports under a daily cap")


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_a_rejection_and_a_self_report_of_the_same_resident_and_day_do_not_deadlock(
    seeded, resident, reviewer, settings, tmp_path
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from backend.actions.services import review_reject, self_report_create

    settings.MEDIA_ROOT = tmp_path
    methodology = capped_self_report_methodology()
    at = timezone.now() - timedelta(hours=1)
    waiting = self_report_create(
        resident=resident,
        methodology_code=methodology.code,
        occurred_at=at,
        data=sample_data(methodology),
        evidence=SimpleUploadedFile("photo.png", PNG, content_type="image/png"),
    )
    assert waiting.status == "pending_review" and waiting.credited_quantity > 0 and waiting.points > 0
    other = Action.objects.create(
        source=Action.Source.SELF_REPORT,
        resident=resident,
        methodology=methodology.code,
        occurred_at=at,
        data=sample_data(methodology),
        status=Action.Status.RECEIVED,
    )

    holding, go = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def self_report_of_the_other_action():
        try:
            self_report_in_flight(other, holding=holding, go=go)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    def reject():
        try:
            review_reject(action_id=waiting.id, reviewer=reviewer, note="blurry")
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    pipeline = threading.Thread(target=self_report_of_the_other_action)
    pipeline.start()
    assert holding.wait(30)
    rejection = threading.Thread(target=reject)
    rejection.start()
    wait_for_a_lock_wait("the rejection never waited for the pipeline's lock")  # behind its cap row
    go.set()
    pipeline.join(30)
    rejection.join(30)

    assert not errors, errors
    waiting.refresh_from_db()
    assert waiting.status == "rejected" and waiting.points == 0
    call_command("ledger_verify", verbosity=0)
