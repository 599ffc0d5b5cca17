"""Partner-attested linking (issue 11, part 1): link codes, partner confirmation, moving and ending bindings."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from backend.actions.links import LINK_CODE_ALPHABET
from backend.actions.models import Action, LinkCode, SubjectBinding
from tests.actions.helpers import LINKS_URL, link_card, ride, signed_post, signed_request
from tests.conftest import client_for, requires_postgres


def new_code(resident, kind="transit_card"):
    response = client_for(resident).post("/api/v1/me/link-codes", {"kind": kind}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def confirm(partner, code, identifier="3100-1111-2222", kind="transit_card", client=None, **kwargs):
    payload = {"code": code, "subject": {"kind": kind, "identifier": identifier}}
    return signed_request(client or APIClient(), "POST", LINKS_URL, partner.pk, partner.secret, payload, **kwargs)


@pytest.fixture
def transit(partner_factory):
    from backend.partners.services import partner_subject_kinds_set

    partner = partner_factory(methodologies=["bus_ride", "metro_ride"])
    partner_subject_kinds_set(partner_id=partner.pk, subject_kinds=["transit_card", "metro_card"])
    partner.refresh_from_db()
    return partner


def error_code(response):
    return response.status_code, response.json()["errors"][0]["code"]


@pytest.mark.django_db
def test_link_code_shape_and_storage(resident):
    body = new_code(resident)
    assert set(body) == {"code", "kind", "expires_at"}
    assert len(body["code"]) == 8 and set(body["code"]) <= set(LINK_CODE_ALPHABET)
    assert not set(LINK_CODE_ALPHABET) & set("0O1IL2Z5S8B")
    row = LinkCode.objects.get()
    assert body["code"] not in row.code_hash
    assert timedelta(minutes=9) < row.expires_at - timezone.now() <= timedelta(minutes=10)


@pytest.mark.django_db
def test_at_most_five_live_codes(resident):
    for _ in range(5):
        new_code(resident)
    response = client_for(resident).post("/api/v1/me/link-codes", {"kind": "transit_card"}, format="json")
    assert error_code(response) == (429, "too_many_link_codes")
    LinkCode.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    new_code(resident)  # expired codes do not count


@pytest.mark.django_db
@pytest.mark.parametrize("body", [{}, {"kind": "passport"}, {"kind": ["transit_card"]}, {"kind": "x" * 10_000}])
def test_link_code_bad_input(resident, body):
    assert client_for(resident).post("/api/v1/me/link-codes", body, format="json").status_code == 400


@pytest.mark.django_db
def test_link_code_needs_a_resident(api):
    assert api.post("/api/v1/me/link-codes", {"kind": "transit_card"}, format="json").status_code == 401


@pytest.mark.django_db
def test_confirm_links_and_claims_last_seven_days(api, transit, resident):
    signed_post(api, transit.pk, transit.secret, {"actions": [ride("early", identifier="3100-1111-2222")]})
    code = new_code(resident)["code"]
    response = confirm(transit, code.lower())  # typed in lower case, still the code
    assert response.status_code == 201, response.content
    binding = SubjectBinding.objects.get()
    assert response.json() == {"binding_id": binding.id, "claimed": {"credited": 1}}
    assert (binding.resident_id, binding.partner_id) == (resident.id, transit.id)
    assert Action.objects.get(external_id="early").resident_id == resident.id


@pytest.mark.django_db
def test_unknown_expired_and_used_codes_get_one_answer(transit, resident):
    code = new_code(resident)["code"]
    assert confirm(transit, code).status_code == 201
    used = confirm(transit, code, identifier="OTHER-1")
    unknown = confirm(transit, "ACDEFGHJ")
    expired_code = new_code(resident)["code"]
    LinkCode.objects.filter(used_at__isnull=True).update(expires_at=timezone.now() - timedelta(seconds=1))
    expired = confirm(transit, expired_code, identifier="OTHER-2")
    assert used.json() == unknown.json() == expired.json()
    assert error_code(used) == (404, "link_code_invalid")
    assert SubjectBinding.objects.count() == 1


@pytest.mark.django_db
def test_kind_mismatch_and_kind_not_allowed(transit, partner_factory, resident):
    code = new_code(resident, kind="metro_card")["code"]
    assert error_code(confirm(transit, code, kind="transit_card")) == (400, "subject_kind_mismatch")
    bikes = partner_factory(methodologies=["bike_ride"])  # declares no subject kinds
    assert error_code(confirm(bikes, code, kind="metro_card")) == (403, "subject_kind_not_allowed")
    assert confirm(transit, code, kind="metro_card").status_code == 201  # the code was not used up


@pytest.mark.django_db
def test_confirm_needs_a_valid_signature_and_fresh_nonce(transit, resident):
    code = new_code(resident)["code"]
    assert confirm(transit, code, signature="0" * 64).status_code == 401
    assert confirm(transit, code, nonce="n-1").status_code == 201
    other = new_code(resident)["code"]
    assert error_code(confirm(transit, other, identifier="X-2", nonce="n-1")) == (409, "nonce_reused")


@pytest.mark.django_db
def test_moving_a_card_ends_the_old_binding_and_keeps_its_credits(api, transit, make_user):
    thief, owner = make_user(), make_user()
    link_card(thief, transit, identifier="CARD-MOVE")
    signed_post(api, transit.pk, transit.secret, {"actions": [ride("t-1", identifier="CARD-MOVE", minutes_ago=300)]})
    earned = Action.objects.get(external_id="t-1")
    assert (earned.status, earned.resident_id) == ("credited", thief.id)

    response = link_card(owner, transit, identifier="card-move")
    assert response.status_code == 201
    assert response.json()["claimed"] == {}  # nothing claimed twice: t-1 stays where it was credited
    old, new = SubjectBinding.objects.order_by("id")
    assert (old.resident_id, old.end_reason, old.ended_at is not None) == (thief.id, "moved", True)
    assert (new.resident_id, new.ended_at) == (owner.id, None)
    earned.refresh_from_db()
    assert (earned.status, earned.resident_id) == ("credited", thief.id)
    assert client_for(thief).get("/api/v1/me/bindings").json()["results"] == []

    signed_post(api, transit.pk, transit.secret, {"actions": [ride("t-2", identifier="CARD-MOVE", minutes_ago=30)]})
    assert Action.objects.get(external_id="t-2").resident_id == owner.id


@pytest.mark.django_db
def test_partner_ends_a_binding(api, transit, resident):
    link_card(resident, transit, identifier="LOST-1")
    payload = {"subject": {"kind": "transit_card", "identifier": "LOST-1"}}
    assert signed_request(api, "DELETE", LINKS_URL, transit.pk, transit.secret, payload).status_code == 204
    assert SubjectBinding.objects.get().end_reason == "partner_ended"
    again = signed_request(api, "DELETE", LINKS_URL, transit.pk, transit.secret, payload)
    assert error_code(again) == (404, "not_found")
    signed_post(api, transit.pk, transit.secret, {"actions": [ride("after", identifier="LOST-1")]})
    assert Action.objects.get(external_id="after").status == "unclaimed"


@pytest.mark.django_db
def test_resident_cannot_unlink_anothers_binding(transit, make_user):
    alice, bob = make_user(), make_user()
    link_card(alice, transit, identifier="ALICE-1")
    binding = SubjectBinding.objects.get()
    assert client_for(bob).delete(f"/api/v1/me/bindings/{binding.id}").status_code == 404
    assert client_for(alice).delete(f"/api/v1/me/bindings/{binding.id}").status_code == 204


@pytest.mark.django_db
def test_post_and_body_delete_on_me_bindings_are_gone(resident):
    client = client_for(resident)
    body = {"kind": "transit_card", "identifier": "X1"}
    assert client.post("/api/v1/me/bindings", body, format="json").status_code == 405
    assert client.generic("DELETE", "/api/v1/me/bindings", "{}", content_type="application/json").status_code == 405


@pytest.mark.django_db
def test_create_partner_command_declares_subject_kinds(seeded):
    import json
    from io import StringIO

    from django.core.management import call_command
    from django.core.management.base import CommandError

    from backend.partners.models import Partner

    out = StringIO()
    call_command(
        "create_partner",
        name="Qingdao Metro",
        methodologies="metro_ride",
        subject_kinds="metro_card,transit_card",
        json=True,
        stdout=out,
    )
    partner = Partner.objects.get(pk=json.loads(out.getvalue())["partner_id"])
    assert partner.subject_kinds == ["metro_card", "transit_card"]
    with pytest.raises(CommandError):
        call_command("create_partner", name="Bad", methodologies="metro_ride", subject_kinds="passport")


@pytest.mark.django_db
def test_admin_shows_and_edits_subject_kinds(transit, make_user):
    from django.test import Client

    from tests.conftest import PASSWORD

    admin_user = make_user(role="admin")
    client = Client()
    assert client.login(username=admin_user.raw_phone, password=PASSWORD)
    assert "metro_card" in client.get("/admin/partners/partner/").content.decode()
    selection = {"action": "set_subject_kinds", "_selected_action": [transit.pk]}
    page = client.post("/admin/partners/partner/", selection)  # the confirmation page, with checkboxes
    assert 'name="subject_kinds"' in page.content.decode() and 'type="checkbox"' in page.content.decode()
    response = client.post(
        "/admin/partners/partner/",
        {**selection, "confirm": "yes", "note": "Bike-share accounts from now on", "subject_kinds": ["bike_account"]},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    transit.refresh_from_db()
    assert transit.subject_kinds == ["bike_account"]


def run_at_once(*calls):
    barrier = threading.Barrier(len(calls))
    results = [None] * len(calls)

    def run(i, call):
        try:
            barrier.wait()
            results[i] = call()
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@requires_postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("attempt", range(3))
def test_two_partners_confirm_one_code_at_once_one_binding(transit, partner_factory, make_user, attempt):
    from backend.partners.services import partner_subject_kinds_set

    metro = partner_factory(methodologies=["metro_ride"])
    partner_subject_kinds_set(partner_id=metro.pk, subject_kinds=["transit_card"])
    metro.refresh_from_db()
    code = new_code(make_user())["code"]
    results = run_at_once(
        lambda: confirm(transit, code, identifier=f"A-{attempt}").status_code,
        lambda: confirm(metro, code, identifier=f"B-{attempt}").status_code,
    )
    assert sorted(results) == [201, 404]
    assert SubjectBinding.objects.count() == 1


@requires_postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("attempt", range(3))
def test_one_card_linked_by_two_residents_at_once_one_live_binding(transit, make_user, attempt):
    codes = [new_code(make_user())["code"] for _ in range(2)]
    results = run_at_once(*[lambda c=c: confirm(transit, c, identifier=f"SAME-{attempt}").status_code for c in codes])
    assert results == [201, 201]  # the partner's word: the later link moves the card
    assert SubjectBinding.objects.live().count() == 1
    assert SubjectBinding.objects.count() == 2


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_fifty_link_code_requests_at_once_make_five(make_user):
    resident = make_user()
    results = run_at_once(
        *[
            lambda: (
                client_for(resident).post("/api/v1/me/link-codes", {"kind": "transit_card"}, format="json").status_code
            )
            for _ in range(50)
        ]
    )
    assert results.count(201) == 5
    assert results.count(429) == 45
    assert LinkCode.objects.count() == 5
