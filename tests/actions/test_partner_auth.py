"""Every way a signed partner request can fail, and that a failed request has no effect at all."""

import io
import json
import time

import pytest
from django.core.management import call_command

from backend.actions.models import Action, IngestBatch
from backend.partners.models import PartnerNonce
from backend.partners.services import partner_secret_rotate, partner_set_status
from tests.actions.helpers import PARTNER_URL, ride, signed_headers, signed_post


def batch(n=1, prefix="a"):
    return {"actions": [ride(f"{prefix}-{i}") for i in range(n)]}


def assert_no_effect():
    assert not Action.objects.exists()
    assert not IngestBatch.objects.exists()
    assert not PartnerNonce.objects.exists()


def error_code(response):
    return response.json()["errors"][0]["code"]


@pytest.mark.django_db
def test_valid_signature_is_accepted(api, partner):
    response = signed_post(api, partner.pk, partner.secret, batch())
    assert response.status_code == 202, response.json()
    assert response.json()["results"][0]["status"] == "accepted"


@pytest.mark.django_db
def test_unknown_partner(api, partner):
    response = signed_post(api, 999_999, partner.secret, batch())
    assert response.status_code == 401
    assert error_code(response) == "partner_unknown"
    assert_no_effect()


@pytest.mark.django_db
def test_missing_headers_are_unknown_partner(api, partner):
    response = api.post(PARTNER_URL, batch(), format="json")
    assert response.status_code == 401
    assert error_code(response) == "partner_unknown"


@pytest.mark.django_db
def test_bad_signature(api, partner):
    response = signed_post(api, partner.pk, partner.secret, batch(), signature="0" * 64)
    assert response.status_code == 401
    assert error_code(response) == "signature_invalid"
    assert_no_effect()


@pytest.mark.django_db
def test_signature_over_a_different_body_is_refused(api, partner):
    body = json.dumps(batch()).encode()
    headers = signed_headers(partner.pk, partner.secret, body)
    tampered = body.replace(b'"10"', b'"60"')
    response = api.generic("POST", PARTNER_URL, tampered, content_type="application/json", **headers)
    assert response.status_code == 401
    assert error_code(response) == "signature_invalid"
    assert_no_effect()


@pytest.mark.django_db
def test_wrong_secret(api, partner, partner_factory):
    other = partner_factory()
    response = signed_post(api, partner.pk, other.secret, batch())
    assert error_code(response) == "signature_invalid"


@pytest.mark.django_db
# 10 s past the 300 s window: the request itself (int() truncation plus a slow machine) must not bring it back inside.
@pytest.mark.parametrize("offset", [-310, 310, -3600])
def test_stale_or_future_timestamp(api, partner, offset):
    response = signed_post(api, partner.pk, partner.secret, batch(), timestamp=int(time.time()) + offset)
    assert response.status_code == 401
    assert error_code(response) == "signature_expired"
    assert_no_effect()


@pytest.mark.django_db
def test_timestamp_inside_the_window_is_fine(api, partner):
    response = signed_post(api, partner.pk, partner.secret, batch(), timestamp=int(time.time()) - 290)
    assert response.status_code == 202


@pytest.mark.django_db
def test_replayed_nonce(api, partner):
    first = signed_post(api, partner.pk, partner.secret, batch(prefix="x"), nonce="nonce-1")
    assert first.status_code == 202
    replay = signed_post(api, partner.pk, partner.secret, batch(prefix="y"), nonce="nonce-1")
    assert replay.status_code == 409
    assert error_code(replay) == "nonce_reused"
    # The replayed request had no effect: nothing of its body was stored.
    assert not Action.objects.filter(external_id__startswith="y-").exists()
    assert IngestBatch.objects.count() == 1


@pytest.mark.django_db
def test_rejected_body_does_not_burn_the_nonce(api, partner):
    bad = signed_post(api, partner.pk, partner.secret, {"actions": "nope"}, nonce="n-2")
    assert bad.status_code == 400
    assert_no_effect()
    assert signed_post(api, partner.pk, partner.secret, batch(), nonce="n-2").status_code == 202


@pytest.mark.django_db
def test_rotated_secret_old_and_new_both_work_then_the_oldest_retires(api, partner):
    original = partner.secret
    second = partner_secret_rotate(partner_id=partner.pk)
    assert signed_post(api, partner.pk, original, batch(prefix="old")).status_code == 202
    assert signed_post(api, partner.pk, second, batch(prefix="new")).status_code == 202

    third = partner_secret_rotate(partner_id=partner.pk)  # at most two active: the original retires
    response = signed_post(api, partner.pk, original, batch(prefix="old2"))
    assert response.status_code == 401
    assert error_code(response) == "signature_invalid"
    assert signed_post(api, partner.pk, second, batch(prefix="s2")).status_code == 202
    assert signed_post(api, partner.pk, third, batch(prefix="t2")).status_code == 202


@pytest.mark.django_db
def test_suspended_partner(api, partner):
    partner_set_status(partner_id=partner.pk, status="suspended")
    response = signed_post(api, partner.pk, partner.secret, batch())
    assert response.status_code == 403
    assert error_code(response) == "partner_suspended"
    assert_no_effect()


@pytest.mark.django_db
def test_create_partner_command_prints_id_and_secret(seeded):
    out = io.StringIO()
    call_command("create_partner", "--name", "琴岛通", "--methodologies", "bus_ride,metro_ride", "--json", stdout=out)
    payload = json.loads(out.getvalue())
    assert set(payload) == {"partner_id", "secret"}
    assert len(payload["secret"]) == 64


@pytest.mark.django_db
def test_secrets_are_stored_encrypted(partner):
    stored = partner.secrets.get().secret_encrypted
    assert partner.secret not in stored
