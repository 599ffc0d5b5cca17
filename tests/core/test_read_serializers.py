"""The hot list serializers write their fields out by hand (backend/actions/apis.py ActionListItemSerializer,
backend/ledger/apis.py LedgerEntrySerializer): their output must stay exactly what DRF's generic field walk gives,
down to the rendered bytes (big integers, time zones, nulls)."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer

from backend.actions.apis import ActionDetailSerializer, ActionListItemSerializer
from backend.actions.models import Action
from backend.actions.selectors import resident_action_list
from backend.actions.services import binding_create
from backend.ledger.apis import LedgerEntrySerializer, WalletSerializer
from backend.ledger.selectors import resident_amounts_attach, resident_transactions, wallet_get
from backend.ledger.services import action_credits_post_bulk, transaction_reverse
from tests.actions.helpers import ride, signed_post
from tests.conftest import client_for
from tests.ledger.helpers import credit

pytestmark = pytest.mark.django_db


def generic(serializer_class, obj) -> dict:
    """What DRF's own Serializer.to_representation gives for the declared fields."""
    return serializers.Serializer.to_representation(serializer_class(), obj)


@pytest.fixture
def resident_with_history(api, partner, make_user):
    resident = make_user()
    binding_create(resident=resident, kind="transit_card", identifier="SER-1")
    start = timezone.now() - timedelta(days=3)
    items = [ride(f"s-{i}", identifier="SER-1", at=start + timedelta(minutes=50 * i)) for i in range(12)]
    assert signed_post(api, partner.pk, partner.secret, {"actions": items}).status_code == 202
    big = credit(resident.pk, points=10**15, grams=9 * 10**17)
    ids = action_credits_post_bulk(credits=[big, credit(resident.pk, points=3)])
    transaction_reverse(transaction_id=ids[big.idempotency_key], reason="fraud", idempotency_key=f"ser-{resident.pk}")
    return resident


def test_action_list_items_equal_the_generic_walk(resident_with_history):
    actions = list(Action.objects.filter(resident=resident_with_history).select_related("methodology_version"))
    assert len(actions) == 12 and {a.status for a in actions} >= {"credited"}
    Action.objects.filter(pk=actions[0].pk).update(reason="x" * 64)
    actions[0].refresh_from_db()
    for action in actions:
        fast, slow = ActionListItemSerializer(action).data, generic(ActionListItemSerializer, action)
        assert fast == slow
        assert JSONRenderer().render(fast) == JSONRenderer().render(slow)
    assert ActionDetailSerializer(actions[1]).data["breakdown"]  # the detail keeps the generic path
    # The list's own queryset (the version number as a joined column) writes the same bytes.
    listed = resident_action_list(resident=resident_with_history).order_by("id")
    by_id = {a.id: a for a in actions}
    assert len(listed) == len(actions)
    for action in listed:
        slow = generic(ActionListItemSerializer, by_id[action.id])
        assert JSONRenderer().render(ActionListItemSerializer(action).data) == JSONRenderer().render(slow)


def test_ledger_entries_equal_the_generic_walk(resident_with_history):
    txns = resident_amounts_attach(
        list(resident_transactions(resident_id=resident_with_history.pk).order_by("-id")),
        resident_id=resident_with_history.pk,
    )
    assert any(t.reverses_id for t in txns) and any(not t.reverses_id for t in txns)
    for txn in txns:
        fast, slow = LedgerEntrySerializer(txn).data, generic(LedgerEntrySerializer, txn)
        assert fast == slow
        assert JSONRenderer().render(fast) == JSONRenderer().render(slow)
    page = client_for(resident_with_history).get("/api/v1/me/ledger").json()["results"]
    assert max(abs(e["amounts"]["carbon_g"]) for e in page) == 9 * 10**17  # exact, never through float


def test_wallet_equals_the_generic_walk(resident_with_history):
    wallet = wallet_get(resident_id=resident_with_history.pk)
    assert wallet["points_expiring"] and wallet["carbon_g"] > 0
    for value in (wallet, {**wallet, "points_expiring": []}, {**wallet, "carbon_g": 9 * 10**17, "points_pending": 0}):
        fast, slow = WalletSerializer(value).data, generic(WalletSerializer, value)
        assert fast == slow
        assert JSONRenderer().render(fast) == JSONRenderer().render(slow)
