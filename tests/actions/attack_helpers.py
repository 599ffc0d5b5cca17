"""Building blocks of the attack tests (issue 11): actions stored as if they had slipped past submission."""

from datetime import timedelta

from django.utils import timezone

from backend.actions.models import Action, IngestBatch
from backend.actions.subjects import subject_hash, subject_last4


def stored_action(partner, external_id, *, methodology, identifier, data, kind="transit_card", at=None):
    """A `received` partner action written straight to the database (data stored before today's bounds, a
    bug in submission): the pipeline must survive whatever it finds. In a batch of its own, like every partner
    action (the reconciler finds its work through the batches not processed yet)."""
    batch = IngestBatch.objects.create(partner=partner, nonce=f"stored-{external_id}", submitted=1, accepted=1)
    return Action.objects.create(
        source=Action.Source.PARTNER,
        partner=partner,
        batch=batch,
        external_id=external_id,
        methodology=methodology,
        subject_kind=kind,
        subject_hash=subject_hash(kind, identifier),
        subject_last4=subject_last4(identifier),
        occurred_at=at or timezone.now() - timedelta(hours=2),
        data=data,
        status=Action.Status.RECEIVED,
    )


def appliance(serial, **overrides):
    data = {
        "annual_kwh_baseline": "500",
        "annual_kwh_product": "300",
        "serial": serial,
        "energy_label_grade": 1,
        "e_invoice_number": f"INV-{serial}",
    }
    data.update(overrides)
    return data
