"""Issue 11, part 1 (observed attack): a resident could bind someone else's card by typing its number."""

import pytest

from backend.actions.models import Action, SubjectBinding
from tests.actions.helpers import ride, signed_post
from tests.conftest import client_for


@pytest.mark.django_db
def test_typing_someone_elses_card_number_binds_nothing(api, partner, make_user):
    """Before: 201 with every unclaimed trip of that card of the last 7 days, and the real owner got 409."""
    victim_trip = ride("victim-1", identifier="3100 5555 6666 7777", minutes_ago=90)
    signed_post(api, partner.pk, partner.secret, {"actions": [victim_trip]})
    thief = make_user()
    response = client_for(thief).post(
        "/api/v1/me/bindings", {"kind": "transit_card", "identifier": "31005555 66667777"}, format="json"
    )
    assert response.status_code == 405
    assert not SubjectBinding.objects.exists()
    trip = Action.objects.get(external_id="victim-1")
    assert (trip.status, trip.resident_id) == ("unclaimed", None)
