"""Signature v2 (method, path with query, partner id, timestamp, nonce and body hash, newline-separated), v1 per
partner until an admin turns it off, and throttling of failed partner authentications."""

import hashlib
import hmac
import json
import time
import uuid

import pytest

from backend.partners.models import Partner
from tests.actions.helpers import PARTNER_URL, ride, signed_headers

pytestmark = pytest.mark.django_db


def v2_headers(partner_id, secret, method, path_with_query, body: bytes, signed_id=None, **override) -> dict:
    timestamp, nonce = str(int(time.time())), uuid.uuid4().hex
    signed_id = partner_id if signed_id is None else signed_id
    message = "\n".join(
        [method, path_with_query, str(signed_id), timestamp, nonce, hashlib.sha256(body).hexdigest()]
    ).encode()
    headers = {
        "HTTP_X_PARTNER_ID": str(partner_id),
        "HTTP_X_TIMESTAMP": timestamp,
        "HTTP_X_NONCE": nonce,
        "HTTP_X_SIGNATURE_VERSION": "2",
        "HTTP_X_SIGNATURE": hmac.new(secret.encode(), message, hashlib.sha256).hexdigest(),
    }
    return headers | override


def post_v2(api, partner, body: bytes, *, signed_path=PARTNER_URL, signed_method="POST", signed_id=None):
    headers = v2_headers(partner.pk, partner.secret, signed_method, signed_path, body, signed_id=signed_id)
    from django.test import TestCase

    with TestCase.captureOnCommitCallbacks(execute=True):
        return api.generic("POST", PARTNER_URL, body, content_type="application/json", **headers)


def code(response):
    return response.json()["errors"][0]["code"]


def test_v2_signature_is_accepted(api, partner):
    body = json.dumps({"actions": [ride("v2-1")]}).encode()
    response = post_v2(api, partner, body)
    assert response.status_code == 202, response.json()


@pytest.mark.parametrize(
    "tamper",
    [{"signed_path": "/api/v1/partner/actions?x=1"}, {"signed_method": "PUT"}, {"signed_id": 999_999}],
)
def test_v2_signs_method_path_and_partner(api, partner, tamper):
    body = json.dumps({"actions": [ride("v2-2")]}).encode()
    response = post_v2(api, partner, body, **tamper)
    assert response.status_code == 401 and code(response) == "signature_invalid"


def test_v2_get_signs_the_query(api, partner):
    path = "/api/v1/partner/actions/nope?probe=1"
    good = api.get(path, **v2_headers(partner.pk, partner.secret, "GET", path, b""))
    assert good.status_code == 404  # authenticated, the action does not exist
    other = api.get(path, **v2_headers(partner.pk, partner.secret, "GET", "/api/v1/partner/actions/nope", b""))
    assert other.status_code == 401


def test_unknown_signature_version(api, partner):
    body = b'{"actions": []}'
    headers = signed_headers(partner.pk, partner.secret, body) | {"HTTP_X_SIGNATURE_VERSION": "3"}
    response = api.generic("POST", PARTNER_URL, body, content_type="application/json", **headers)
    assert response.status_code == 401 and code(response) == "signature_version_unsupported"


def test_v1_refused_once_an_admin_turns_it_off(api, partner):
    body = json.dumps({"actions": [ride("v1-1")]}).encode()
    from backend.partners.services import partner_set_signature_v1

    partner_set_signature_v1(partner_id=partner.pk, allowed=False, actor=None)
    headers = signed_headers(partner.pk, partner.secret, body)
    response = api.generic("POST", PARTNER_URL, body, content_type="application/json", **headers)
    assert response.status_code == 401 and code(response) == "signature_version_not_allowed"
    assert post_v2(api, partner, body).status_code == 202
    assert Partner.objects.get(pk=partner.pk).signature_v1_allowed is False


def test_failed_partner_auth_is_throttled_per_address(api, partner, settings):
    body = b'{"actions": []}'
    statuses = []
    for _ in range(130):
        headers = signed_headers(partner.pk, partner.secret, body, signature="0" * 64)
        statuses.append(api.generic("POST", PARTNER_URL, body, content_type="application/json", **headers).status_code)
    assert statuses.count(401) <= 30, statuses.count(401)
    assert statuses[-1] == 429


def test_failed_partner_auth_is_throttled_per_partner_id_across_addresses(api, partner):
    body = b'{"actions": []}'
    statuses = []
    for i in range(130):
        headers = signed_headers(partner.pk, partner.secret, body, signature="0" * 64)
        headers["REMOTE_ADDR"] = f"10.0.{i // 250}.{i % 250 + 1}"
        statuses.append(api.generic("POST", PARTNER_URL, body, content_type="application/json", **headers).status_code)
    assert statuses[-1] == 429 and statuses.count(401) <= 60


def test_schema_declares_the_partner_headers():
    from pathlib import Path

    import yaml

    schema = yaml.safe_load((Path(__file__).resolve().parents[2] / "api_schema/openapi.yaml").read_text())
    for path in ("/api/v1/partner/actions", "/api/v1/partner/actions/{external_id}"):
        for operation in schema["paths"][path].values():
            names = {p["name"] for p in operation.get("parameters", []) if p["in"] == "header"}
            assert {"X-Partner-Id", "X-Timestamp", "X-Nonce", "X-Signature", "X-Signature-Version"} <= names
    assert "X-Signature-Version: 2" in json.dumps(schema) or "X-Signature-Version" in json.dumps(schema)


def _snippet(text: str) -> str:
    start = text.index("```python") + len("```python")
    return text[start : text.index("```", start)]


@pytest.mark.parametrize("source", ["README.md", "schema"])
def test_documented_v2_client_snippet_is_accepted(api, partner, source):
    from pathlib import Path

    from django.test import TestCase

    from backend.partners.auth import SIGNING_DOC

    root = Path(__file__).resolve().parents[2]
    text = (root / "README.md").read_text() if source == "README.md" else SIGNING_DOC
    if source == "README.md":
        text = text[text.index("<!-- signature-v2-client -->") :]
    namespace = {"__name__": "snippet"}
    exec(compile(_snippet(text), source, "exec"), namespace)
    body = json.dumps({"actions": [ride(f"doc-{source}")]}).encode()
    headers = namespace["sign_v2"](partner.secret, partner.pk, "POST", PARTNER_URL, body)
    meta = {"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()}
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = api.generic("POST", PARTNER_URL, body, content_type="application/json", **meta)
    assert response.status_code == 202, response.json()
    assert _snippet(text) == _snippet(SIGNING_DOC)  # README and schema carry the same client
