"""Our own error messages follow Accept-Language: Simplified Chinese (the default) or English.

The catalogue is locale/zh_Hans/LC_MESSAGES/django.po, compiled to the committed django.mo (`make messages`).
"""

import ast
import re
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.utils import translation

from backend.methodologies.engine import ActionDataInvalid, parse_action_data
from tests.conftest import PASSWORD

PO = Path(settings.BASE_DIR) / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"
MO = PO.with_suffix(".mo")
CJK = re.compile(r"[\u4e00-\u9fff]")


def only_error(response, code):
    errors = [e for e in response.json()["errors"] if e["code"] == code]
    assert len(errors) == 1, response.json()
    return errors[0]


def login_wrong_password(api, resident, language):
    return api.post(
        "/api/v1/auth/token",
        {"phone": resident.raw_phone, "password": "wrong-password"},
        format="json",
        HTTP_ACCEPT_LANGUAGE=language,
    )


def register_bad_phone(api, language):
    body = {"phone": "12345", "password": PASSWORD, "display_name": "小王", "district": "370202"}
    return api.post("/api/v1/auth/register", body, format="json", HTTP_ACCEPT_LANGUAGE=language)


def partner_request_unknown_partner(api, language):
    return api.post(
        "/api/v1/partner/actions",
        {"actions": []},
        format="json",
        HTTP_X_PARTNER_ID="999999",
        HTTP_X_TIMESTAMP=str(int(time.time())),
        HTTP_X_NONCE="x",
        HTTP_X_SIGNATURE="00",
        HTTP_ACCEPT_LANGUAGE=language,
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("language", "detail"),
    [("zh-hans", "手机号或密码错误。"), ("en", "Phone number or password is wrong.")],
)
def test_wrong_password_detail_follows_accept_language(api, resident, language, detail):
    response = login_wrong_password(api, resident, language)
    assert response.status_code == 401
    assert only_error(response, "invalid_credentials")["detail"] == detail


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("language", "detail"),
    [("zh-hans", "请输入有效的中国大陆手机号码。"), ("en", "Enter a valid mainland China mobile number.")],
)
def test_invalid_phone_detail_follows_accept_language(api, reference_data, language, detail):
    response = register_bad_phone(api, language)
    assert response.status_code == 400
    error = only_error(response, "phone_invalid")
    assert error == {"code": "phone_invalid", "detail": detail, "attr": "phone"}


@pytest.mark.django_db
@pytest.mark.parametrize(("language", "detail"), [("zh-hans", "未知的合作方。"), ("en", "Unknown partner.")])
def test_unknown_partner_detail_follows_accept_language(api, language, detail):
    response = partner_request_unknown_partner(api, language)
    assert response.status_code == 401
    assert only_error(response, "partner_unknown")["detail"] == detail


@pytest.mark.django_db
def test_without_accept_language_the_default_is_chinese(api, resident):
    response = login_wrong_password(api, resident, "")
    assert only_error(response, "invalid_credentials")["detail"] == "手机号或密码错误。"


@pytest.mark.parametrize(
    ("language", "detail"), [("zh-hans", "distance_km 为必填项。"), ("en", "distance_km is required.")]
)
def test_formatted_messages_are_translated_with_their_placeholders_filled(language, detail):
    methodology = SimpleNamespace(data_schema={"distance_km": {"type": "decimal"}})
    with translation.override(language), pytest.raises(ActionDataInvalid) as raised:
        parse_action_data(methodology, {})
    assert (raised.value.code, raised.value.detail) == ("required", detail)


def po_entries(text: str) -> list[dict]:
    """(flags, msgid, msgstr) of every entry of a .po file, header included."""
    entries = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = block.splitlines()
        flags = {f.strip() for line in lines if line.startswith("#,") for f in line[2:].split(",")}
        fields: dict[str, str] = {}
        current = None
        for line in lines:
            if line.startswith("#"):
                continue
            match = re.match(r'^(msgid|msgstr|msgid_plural|msgstr\[\d+\]|msgctxt) (".*")$', line)
            if match:
                current = match.group(1)
                fields[current] = ast.literal_eval(match.group(2))
            elif line.startswith('"') and current:
                fields[current] += ast.literal_eval(line)
        if "msgid" in fields:
            entries.append({"flags": flags, **fields})
    return entries


def test_every_message_has_a_chinese_translation_and_none_is_fuzzy():
    entries = po_entries(PO.read_text(encoding="utf-8"))
    messages = [e for e in entries if e["msgid"]]
    assert len(messages) > 100  # the catalogue really was extracted (guards against an empty parse)
    assert [e["msgid"] for e in entries if "fuzzy" in e["flags"]] == []
    assert [e["msgid"] for e in messages if not e.get("msgstr", "").strip()] == []
    assert [e["msgid"] for e in messages if not CJK.search(e["msgstr"])] == []
    for e in messages:  # a placeholder lost in translation would raise at runtime
        assert sorted(re.findall(r"%\(\w+\)[sr]|%s", e["msgid"])) == sorted(
            re.findall(r"%\(\w+\)[sr]|%s", e["msgstr"])
        ), e["msgid"]


def test_compiled_catalogue_is_committed_and_current():
    assert MO.exists(), "run `make messages` and commit locale/zh_Hans/LC_MESSAGES/django.mo"
    assert MO.stat().st_size > 0
    with translation.override("zh-hans"):
        assert translation.gettext("Unknown partner.") == "未知的合作方。"
        # Every translation of the .po is in the .mo (a .po edited without recompiling fails here).
        stale = [
            e["msgid"]
            for e in po_entries(PO.read_text(encoding="utf-8"))
            if e["msgid"] and translation.gettext(e["msgid"]) != e["msgstr"]
        ]
    assert stale == []
