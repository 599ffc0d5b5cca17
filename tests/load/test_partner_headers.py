"""The load tests' one copy of the signed partner headers (locust/prepare.py `partner_headers`, used by
prepare.py, locustfile.py, bench_ingest.py and bench_capacity.py) is what the API accepts."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "locust"))

from prepare import partner_headers

from tests.actions.helpers import PARTNER_URL, ride


@pytest.mark.django_db
def test_partner_headers_sign_like_the_backend(partner):
    from backend.partners.services import signature_compute

    body = b'{"actions": []}'
    headers = partner_headers(partner.pk, partner.secret, body)
    assert headers["X-Partner-Id"] == str(partner.pk)
    assert headers["X-Signature"] == signature_compute(partner.secret, headers["X-Timestamp"], headers["X-Nonce"], body)
    assert partner_headers(partner.pk, partner.secret, body)["X-Nonce"] != headers["X-Nonce"]


@pytest.mark.django_db
def test_a_batch_signed_with_partner_headers_is_accepted(api, partner):
    body = json.dumps({"actions": [ride("hdr-1", identifier="HDR-1")]}).encode()
    signed = partner_headers(partner.pk, partner.secret, body)
    meta = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in signed.items() if k != "Content-Type"}
    response = api.generic("POST", PARTNER_URL, body, content_type=signed["Content-Type"], **meta)
    assert response.status_code == 202, response.content
    assert [r["status"] for r in response.json()["results"]] == ["accepted"]
