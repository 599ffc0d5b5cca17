import pytest
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from backend.accounts.models import Consent, User
from tests.conftest import PASSWORD, client_for


@pytest.mark.django_db
def test_patch_me_changes_profile_but_not_role(resident_client, resident):
    response = resident_client.patch(
        "/api/v1/me", {"display_name": "新名字", "district": "370211", "role": "admin"}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    assert body["display_name"] == "新名字" and body["district"] == "370211" and body["role"] == "resident"
    resident.refresh_from_db()
    assert resident.role == "resident"


@pytest.mark.django_db
def test_patch_me_unknown_district(resident_client):
    response = resident_client.patch("/api/v1/me", {"district": "000000"}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["attr"] == "district"


@pytest.mark.django_db
def test_consents_list_and_withdraw(resident_client, resident):
    listed = resident_client.get("/api/v1/me/consents").json()["results"]
    assert {c["kind"] for c in listed if c["active"]} == {"privacy_policy", "partner_data"}

    response = resident_client.post("/api/v1/me/consents", {"kind": "partner_data", "granted": False}, format="json")
    assert response.status_code == 200
    assert not Consent.objects.filter(user=resident, kind="partner_data", withdrawn_at__isnull=True).exists()
    # History kept: the withdrawn row is still listed.
    assert any(c["kind"] == "partner_data" and not c["active"] for c in response.json()["results"])

    again = resident_client.post("/api/v1/me/consents", {"kind": "partner_data", "granted": True}, format="json")
    assert sum(1 for c in again.json()["results"] if c["kind"] == "partner_data") == 2


@pytest.mark.django_db
def test_privacy_policy_cannot_be_withdrawn(resident_client):
    response = resident_client.post("/api/v1/me/consents", {"kind": "privacy_policy", "granted": False}, format="json")
    assert response.status_code == 400


@pytest.mark.django_db
def test_erasure_anonymises_and_revokes(api, resident):
    tokens = api.post("/api/v1/auth/token", {"phone": resident.raw_phone, "password": PASSWORD}, format="json").json()
    client = client_for(resident)

    assert client.delete("/api/v1/me").status_code == 204

    user = User.objects.get(pk=resident.pk)
    assert user.status == "erased" and not user.is_active
    assert user.phone_hash is None and user.phone_encrypted == "" and user.phone_masked == ""
    assert user.display_name == "已注销用户"
    assert not user.has_usable_password()
    assert not Consent.objects.filter(user=user, withdrawn_at__isnull=True).exists()
    outstanding = OutstandingToken.objects.filter(user=user)
    assert outstanding.exists()
    assert BlacklistedToken.objects.filter(token__in=outstanding).count() == outstanding.count()
    # Old tokens stop working, the number can no longer log in, and may register again as a new person.
    assert client.get("/api/v1/me").status_code == 401
    assert api.post("/api/v1/auth/token/refresh", {"refresh": tokens["refresh"]}, format="json").status_code == 401
    assert (
        api.post("/api/v1/auth/token", {"phone": resident.raw_phone, "password": PASSWORD}, format="json").status_code
        == 401
    )
    again = api.post(
        "/api/v1/auth/register",
        {"phone": resident.raw_phone, "password": PASSWORD, "display_name": "n", "district": "370202"},
        format="json",
    )
    assert again.status_code == 201 and again.json()["id"] != resident.pk


@pytest.mark.django_db
def test_districts_public_and_match_shared_reference(api, reference_data):
    from pathlib import Path

    response = api.get("/api/v1/districts")
    assert response.status_code == 200
    assert response.json()["next"] is None  # ten districts fit one cursor page
    districts = {d["code"]: d for d in response.json()["results"]}
    assert len(districts) == 10
    reference = Path(__file__).resolve().parents[2].parent / "shared" / "qingdao.md"
    if reference.exists():
        text = reference.read_text()
        for code, d in districts.items():
            line = next(line for line in text.splitlines() if line.startswith(f"| {code} |"))
            assert d["name_zh"].split(" ")[0] in line and f"{d['co2_intensity_target_pct']} %" in line


@pytest.mark.django_db
def test_create_user_command_prints_json():
    import io
    import json

    from django.core.management import call_command

    out = io.StringIO()
    call_command(
        "create_user",
        "--role",
        "reviewer",
        "--phone",
        "13912345678",
        "--password",
        PASSWORD,
        "--display-name",
        "审核员",
        stdout=out,
    )
    payload = json.loads(out.getvalue())
    assert User.objects.get(pk=payload["user_id"]).role == "reviewer"
