"""The declared error codes match what the API answers: representative error paths across the apps, each
answered code asserted to be in that operation's schema enum for that status (api_schema/openapi.yaml), so a
generated client's typed errors cover what the server really says."""

import json
from functools import cache
from pathlib import Path

import pytest
import yaml

from backend.ledger.services import action_credits_post_bulk
from tests.accounts.test_auth import PASSWORD
from tests.actions.helpers import PARTNER_URL, ride, signed_get, signed_post
from tests.conftest import client_for, next_phone
from tests.ledger.helpers import credit

pytestmark = pytest.mark.django_db
SCHEMA = Path(__file__).resolve().parents[2] / "api_schema" / "openapi.yaml"


@cache
def _schema() -> dict:
    return yaml.safe_load(SCHEMA.read_text())


def _resolve(node: dict) -> dict:
    while "$ref" in node:
        node = _schema()["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def declared_codes(operation_id: str, status: int) -> set[str]:
    for operations in _schema()["paths"].values():
        for operation in operations.values():
            if isinstance(operation, dict) and operation.get("operationId") == operation_id:
                response = operation["responses"].get(str(status))
                assert response is not None, f"{operation_id} documents no {status}"
                body = _resolve(response["content"]["application/json"]["schema"])
                item = _resolve(body["properties"]["errors"]["items"])
                code = item["properties"]["code"]
                return set(_resolve(code["allOf"][0] if "allOf" in code else code)["enum"])
    raise AssertionError(f"no operation {operation_id}")


def assert_declared(response, operation_id: str, status: int, code: str) -> None:
    body = response.json()
    assert response.status_code == status, body
    assert body["errors"][0]["code"] == code, body
    assert code in declared_codes(operation_id, status), f"{operation_id} {status} does not declare {code}"


def test_accounts_errors_are_declared(api, make_user):
    user = make_user()
    phone = next_phone()
    body = {"phone": phone, "password": PASSWORD, "display_name": "小王", "district": "370202"}
    created = api.post("/api/v1/auth/register", body, format="json")
    assert created.status_code == 201, created.json()
    assert_declared(api.post("/api/v1/auth/register", body, format="json"), "auth_register", 409, "phone_taken")
    bad_phone = api.post("/api/v1/auth/register", {**body, "phone": "12"}, format="json")
    assert_declared(bad_phone, "auth_register", 400, "phone_invalid")
    wrong = api.post("/api/v1/auth/token", {"phone": phone, "password": "not-it-at-all"}, format="json")
    assert_declared(wrong, "auth_token", 401, "invalid_credentials")
    district = client_for(user).patch("/api/v1/me", {"district": "999999"}, format="json")
    assert_declared(district, "me_update", 400, "district_unknown")
    huge = api.generic("POST", "/api/v1/auth/register", b"{" + b" " * (3 * 1024 * 1024) + b"}",
                       content_type="application/json")
    assert_declared(huge, "auth_register", 413, "request_too_large")


def test_partner_errors_are_declared(api, partner):
    bad = signed_post(api, partner.id, partner.secret, {"actions": [ride("x-1")]}, signature="0" * 64)
    assert_declared(bad, "partner_actions_submit", 401, "signature_invalid")
    assert signed_post(api, partner.id, partner.secret, {"actions": [ride("x-2")]}, nonce="n-1").status_code == 202
    replay = signed_post(api, partner.id, partner.secret, {"actions": [ride("x-3")]}, nonce="n-1")
    assert_declared(replay, "partner_actions_submit", 409, "nonce_reused")
    missing = signed_get(api, partner.id, partner.secret, f"{PARTNER_URL}/no-such-action")
    assert_declared(missing, "partner_actions_status", 404, "not_found")


def test_actions_and_ledger_errors_are_declared(resident, reviewer):
    client = client_for(resident)
    assert_declared(client.get("/api/v1/me/actions/999999"), "me_actions_retrieve", 404, "not_found")
    ids = action_credits_post_bulk(credits=[credit(resident.id)])
    proof = client.get(f"/api/v1/me/ledger/{next(iter(ids.values()))}/proof")
    assert_declared(proof, "me_ledger_proof", 409, "proof_not_ready")
    review = client_for(reviewer).post("/api/v1/admin/reviews/999999/approve", {}, format="json")
    assert_declared(review, "admin_reviews_approve", 404, "not_found")


def test_methodologies_errors_are_declared(seeded, resident, make_user):
    client = client_for(resident)
    data = {"distance_km": "100", "duration_s": 7200}  # beyond the bus ride's 60 km rule
    far = client.post("/api/v1/methodologies/bus_ride/calculate", {"data": data}, format="json")
    assert_declared(far, "methodologies_calculate", 400, "distance_out_of_range")
    nowhere = client.post(
        "/api/v1/methodologies/bus_ride/calculate", {"data": {"distance_km": "5"}, "version": 99}, format="json"
    )
    assert_declared(nowhere, "methodologies_calculate", 404, "version_not_found")
    author = client_for(make_user(role="reviewer"))
    base = "/api/v1/admin/methodologies/bus_ride/versions"
    active = author.patch(f"{base}/1", {"notes": "x"}, format="json")
    assert_declared(active, "admin_methodology_version_update", 409, "version_not_draft")
    preview = author.post(f"{base}/1/preview", {}, format="json")
    assert_declared(preview, "admin_methodology_version_preview", 409, "version_not_previewable")
    number = author.post(base, {}, format="json").json()["number"]
    undated = author.post(f"{base}/{number}/submit", {"note": "ready"}, format="json")
    assert_declared(undated, "admin_methodology_version_submit", 400, "effective_from_required")
    author.patch(f"{base}/{number}", {"effective_from": "2099-06-01T00:00:00+08:00"}, format="json")
    assert author.post(f"{base}/{number}/submit", {"note": "ready"}, format="json").status_code == 200
    own = author.post(f"{base}/{number}/approve", {"note": "mine"}, format="json")
    assert_declared(own, "admin_methodology_version_approve", 403, "author_cannot_approve")


def test_rewards_and_offsets_errors_are_declared(resident):
    client = client_for(resident)
    keyless = client.post("/api/v1/rewards/1/redeem", {}, format="json")
    assert_declared(keyless, "rewards_redeem", 400, "idempotency_key_required")
    missing = client.post("/api/v1/rewards/999999/redeem", {}, format="json", HTTP_IDEMPOTENCY_KEY="k-contract-1")
    assert_declared(missing, "rewards_redeem", 404, "not_found")
    voucher = client.post("/api/v1/me/vouchers/NOPE-NOPE/cancel", {}, format="json")
    assert_declared(voucher, "me_vouchers_cancel", 404, "voucher_not_found")
    merchant = client.get("/api/v1/merchant/rewards")
    assert merchant.status_code == 403
    assert merchant.json()["errors"][0]["code"] in declared_codes("merchant_rewards_list", 403)
    webhook = client.generic(
        "POST", "/api/v1/stripe/webhook", json.dumps({"id": "evt_1"}), content_type="application/json",
        HTTP_STRIPE_SIGNATURE="t=1,v1=00",
    )
    assert_declared(webhook, "stripe_webhook_create", 400, "signature_invalid")
