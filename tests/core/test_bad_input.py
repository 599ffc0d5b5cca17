"""Observed 500s on bad input: each is a 4xx in the one error shape now."""

import io
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.actions.helpers import PARTNER_URL, signed_headers
from tests.conftest import next_phone

DEEP = "[" * 100_000


def assert_error(response, status: int, code: str | None = None, attr: str | None = None):
    assert response.status_code == status, (response.status_code, response.content[:300])
    body = response.json()
    assert body["type"] in ("validation_error", "client_error") and body["errors"], body
    if code:
        assert code in {e["code"] for e in body["errors"]}, body
    if attr:
        assert attr in {e["attr"] for e in body["errors"]}, body


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/v1/auth/register", "/api/v1/auth/token", "/api/v1/auth/token/refresh"])
def test_deeply_nested_json_is_a_400(api, path):
    response = api.generic("POST", path, DEEP, content_type="application/json")
    assert_error(response, 400)


@pytest.mark.django_db
def test_deeply_nested_self_report_data_is_a_400(resident_client, seeded, settings, tmp_path):
    from tests.actions.test_self_report import real_png

    settings.MEDIA_ROOT = tmp_path
    response = resident_client.post(
        "/api/v1/me/actions",
        {
            "methodology": "reusable_cup",
            "occurred_at": (timezone.now() - timedelta(hours=1)).isoformat(),
            "data": DEEP,
            "evidence": io.BytesIO(real_png()),
        },
        format="multipart",
    )
    assert_error(response, 400, attr="data")


@pytest.mark.django_db
def test_body_over_the_upload_limit_is_413(api, partner, settings):
    body = b'{"phone": "' + b"1" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10) + b'"}'
    assert_error(
        api.generic("POST", "/api/v1/auth/register", body, content_type="application/json"), 413, "request_too_large"
    )
    response = api.generic(
        "POST", PARTNER_URL, body, content_type="application/json", **signed_headers(partner.pk, partner.secret, body)
    )
    assert_error(response, 413, "request_too_large")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "override",
    [
        {"HTTP_X_PARTNER_ID": "²"},
        {"HTTP_X_PARTNER_ID": "9" * 5000},
        {"HTTP_X_TIMESTAMP": "¹"},
        {"HTTP_X_TIMESTAMP": "9" * 5000},
        {"HTTP_X_SIGNATURE": "é" * 64},
        {"HTTP_X_NONCE": "é"},
    ],
)
def test_strange_partner_headers_are_401(api, partner, override):
    body = b'{"actions": []}'
    headers = signed_headers(partner.pk, partner.secret, body) | override
    response = api.generic("POST", PARTNER_URL, body, content_type="application/json", **headers)
    assert_error(response, 401)


@pytest.mark.django_db
@pytest.mark.parametrize("number", ["1e5000", "1e1000000", "9" * 5000, "1e-1000000"])
def test_calculate_with_huge_numbers_is_a_400(resident_client, seeded, number):
    from backend.methodologies.models import MethodologyVersion

    for version in MethodologyVersion.objects.filter(status="active").select_related("methodology"):
        methodology = version.methodology
        fields = {
            key: (
                number if spec.get("type", "decimal") in ("decimal", "integer") else (spec.get("choices") or ["x"])[0]
            )
            for key, spec in methodology.data_schema.items()
        }
        url = f"/api/v1/methodologies/{methodology.code}/calculate"
        response = resident_client.post(url, json.dumps({"data": fields}), content_type="application/json")
        assert_error(response, 400)
        raw = json.dumps({"data": fields}).replace(f'"{number}"', number)
        assert_error(resident_client.generic("POST", url, raw, content_type="application/json"), 400)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("date_from", "0001-01-01"),
        ("date", "0001-01-01"),
        ("date_to", "9999-12-31"),
        ("date", "9999-12-31"),
    ],
)
def test_extreme_dates_are_a_400_naming_the_parameter(resident_client, param, value):
    response = resident_client.get("/api/v1/me/actions", {param: value})
    assert_error(response, 400, attr=param)


@pytest.mark.django_db
def test_full_width_digits_are_the_same_phone(api, reference_data):
    from backend.accounts.phones import normalize_phone

    assert normalize_phone("1380000１００１") == "+8613800001001"
    assert normalize_phone("＋８６ 138-0000-1001") == "+8613800001001"
    phone = next_phone()
    wide = phone[:7] + phone[7:].translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    payload = {"password": "Gr33n-Travel!", "display_name": "x", "district": "370202"}
    assert api.post("/api/v1/auth/register", {"phone": phone, **payload}, format="json").status_code == 201
    second = api.post("/api/v1/auth/register", {"phone": wide, **payload}, format="json")
    assert_error(second, 409, "phone_taken")
    login = api.post("/api/v1/auth/token", {"phone": wide, "password": "Gr33n-Travel!"}, format="json")
    assert login.status_code == 200
    # Other Unicode digits (Arabic-Indic) are not a mainland number.
    arabic = phone.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    assert_error(api.post("/api/v1/auth/register", {"phone": arabic, **payload}, format="json"), 400, "phone_invalid")


# A lone surrogate escape parses into a str no UTF-8 writer accepts (the renderer echoing an external_id back
# gave a 500); NaN and Infinity are not JSON; a partner's too-deep body raised RecursionError past its parser.
LONE_SURROGATE = b'{"actions": [{"external_id": "\\ud800", "methodology": "bus_ride"}]}'


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "code"),
    [
        (LONE_SURROGATE, "parse_error"),
        (b'{"actions": [{"external_id": "x", "data": {"distance_km": NaN}}]}', "parse_error"),
        (DEEP.encode(), "json_too_deep"),
    ],
    ids=["lone-surrogate", "nan", "too-deep"],
)
def test_partner_body_that_is_not_strict_json_is_a_400_and_stores_nothing(api, partner, body, code):
    from backend.actions.models import Action, IngestBatch

    headers = signed_headers(partner.pk, partner.secret, body)
    response = api.generic("POST", PARTNER_URL, body, content_type="application/json", **headers)
    assert_error(response, 400, code)
    assert not Action.objects.exists() and not IngestBatch.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    ['{"phone": "\\udfff", "password": "x"}', '{"phone": "13800000000", "password": Infinity}'],
    ids=["lone-surrogate", "infinity"],
)
def test_resident_body_that_is_not_strict_json_is_a_400(api, body):
    assert_error(api.generic("POST", "/api/v1/auth/token", body, content_type="application/json"), 400, "parse_error")


@pytest.mark.django_db
def test_calculate_refuses_nan_and_a_lone_surrogate_key(resident_client, seeded):
    for body in ('{"data": {"distance_km": NaN}}', '{"data": {"\\ud83d": "1"}}'):
        response = resident_client.generic(
            "POST", "/api/v1/methodologies/bus_ride/calculate", body, content_type="application/json"
        )
        assert_error(response, 400, "parse_error")


@pytest.mark.django_db
def test_a_surrogate_pair_is_an_ordinary_character(api, reference_data):
    # "\ud83d\ude00" is 😀: a pair of escapes is valid and must not be refused by the lone-surrogate check.
    body = '{"phone": "\\ud83d\\ude00", "password": "wrong-password"}'
    response = api.generic("POST", "/api/v1/auth/token", body, content_type="application/json")
    assert response.status_code in (400, 401) and "parse_error" not in response.content.decode()
