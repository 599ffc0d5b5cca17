"""The ledger and actions pages are one raw statement each, rows written out without models (backend/core/pagination.py
KeysetRows): pages, cursors and bytes must be exactly what the ORM queryset with DRF's CursorPagination and the
declared serializers gave, walking forwards and backwards, with every filter, forged cursors and time zones."""

import base64
from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.renderers import JSONRenderer

from backend.actions.apis import ActionListItemSerializer
from backend.actions.models import Action
from backend.actions.selectors import resident_action_list
from backend.actions.services import binding_create
from backend.ledger.apis import LedgerEntrySerializer
from backend.ledger.selectors import resident_amounts_attach, resident_transactions
from backend.ledger.services import action_credits_post_bulk, transaction_reverse
from tests.actions.helpers import ride, signed_post
from tests.conftest import client_for
from tests.ledger.helpers import credit

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(api, partner, make_user):
    """A resident with 12 rides (credited and capped), a huge credit reversed, and a neighbour with their own."""
    resident, neighbour = make_user(), make_user()
    binding_create(resident=resident, kind="transit_card", identifier="PAGE-1")
    binding_create(resident=neighbour, kind="transit_card", identifier="PAGE-2")
    start = timezone.now() - timedelta(days=5)
    items = [ride(f"p-{i}", identifier="PAGE-1", at=start + timedelta(hours=9 * i)) for i in range(12)]
    items += [ride(f"q-{i}", identifier="PAGE-2", at=start + timedelta(minutes=40 * i)) for i in range(4)]
    assert signed_post(api, partner.pk, partner.secret, {"actions": items}).status_code == 202
    big = credit(resident.pk, points=10**15, grams=9 * 10**17)
    ids = action_credits_post_bulk(credits=[big, credit(resident.pk, points=3), credit(neighbour.pk, points=4)])
    transaction_reverse(transaction_id=ids[big.idempotency_key], reason="fraud", idempotency_key=f"pg-{resident.pk}")
    return resident


def cursor_of(link: str | None) -> dict | None:
    if link is None:
        return None
    return parse_qs(urlparse(link).query)


def walk(client, path: str, **params) -> list[dict]:
    """Every page forwards by `next`, then backwards by `previous` from the last one: the responses in order."""
    pages = [client.get(path, {"page_size": 3, **params})]
    while pages[-1].json()["next"]:
        pages.append(client.get(pages[-1].json()["next"]))
    back = pages[-1]
    while back.json()["previous"]:
        back = client.get(back.json()["previous"])
        pages.append(back)
    assert all(p.status_code == 200 for p in pages)
    return [p.json() for p in pages]


def expected_ledger(resident_id: int) -> list[bytes]:
    txns = resident_amounts_attach(
        list(resident_transactions(resident_id=resident_id).order_by("-id")), resident_id=resident_id
    )
    return [JSONRenderer().render(LedgerEntrySerializer(t).data) for t in txns]


def expected_actions(resident, **filters) -> list[bytes]:
    return [
        JSONRenderer().render(ActionListItemSerializer(a).data)
        for a in resident_action_list(resident=resident, filters=filters).order_by("-id")
    ]


def rendered(pages: list[dict], count: int) -> list[bytes]:
    """The first `count` pages' items (the forward walk), each rendered as the API does."""
    return [JSONRenderer().render(item) for page in pages[:count] for item in page["results"]]


def forward_pages(pages: list[dict]) -> int:
    return next(i + 1 for i, p in enumerate(pages) if p["next"] is None)


@pytest.mark.parametrize("portable", [False, True], ids=["statement", "orm"])
def test_ledger_pages_are_the_serializer_bytes_forwards_and_backwards(history, monkeypatch, portable):
    if portable:  # the embedded default's path (any database): the ORM queryset and the declared serializer
        monkeypatch.setattr(connection, "vendor", "sqlite")
    client = client_for(history)
    pages = walk(client, "/api/v1/me/ledger")
    forward = forward_pages(pages)
    assert forward >= 3
    assert rendered(pages, forward) == expected_ledger(history.pk)
    # Backwards from the last page gives the same pages again, newest first within each.
    backwards = [p["results"] for p in pages[forward:]]
    assert backwards == [p["results"] for p in reversed(pages[: forward - 1])]
    amounts = [e["amounts"] for page in pages for e in page["results"]]
    assert 9 * 10**17 in [a["carbon_g"] for a in amounts] and -(9 * 10**17) in [a["carbon_g"] for a in amounts]
    assert any(e["reverses"] for e in pages[0]["results"])
    assert any(e["source"]["url"] for page in pages for e in page["results"])


def test_ledger_page_is_one_prepared_statement(history, django_assert_num_queries):
    client = client_for(history)
    client.get("/api/v1/me")  # caches the user row
    with django_assert_num_queries(1):
        page = client.get("/api/v1/me/ledger", {"page_size": 3}).json()
    with django_assert_num_queries(1):
        client.get(page["next"])


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"status": "credited"},
        {"status": "capped"},
        {"methodology": "bus_ride"},
        {"methodology": "metro_ride"},
        {"date_from": "from"},
        {"date_to": "to"},
        {"status": "credited", "methodology": "bus_ride", "date_from": "from", "date_to": "to"},
    ],
    ids=lambda f: "-".join(f) or "none",
)
@pytest.mark.parametrize("portable", [False, True], ids=["statement", "orm"])
def test_actions_pages_are_the_serializer_bytes_with_every_filter(history, monkeypatch, portable, filters):
    from zoneinfo import ZoneInfo

    from backend.core.days import day_bounds

    if portable:
        monkeypatch.setattr(connection, "vendor", "sqlite")
    mine = Action.objects.filter(resident=history).order_by("occurred_at")
    first_day = mine.first().occurred_at.astimezone(ZoneInfo("Asia/Shanghai")).date()
    last_day = mine.last().occurred_at.astimezone(ZoneInfo("Asia/Shanghai")).date()
    assert first_day < last_day
    query = dict(filters)
    selector_filters = dict(filters)
    if "date_from" in filters:
        query["date_from"] = (first_day + timedelta(days=1)).isoformat()
        selector_filters["date_from"] = day_bounds(first_day + timedelta(days=1))[0]
    if "date_to" in filters:
        query["date_to"] = (last_day - timedelta(days=1)).isoformat()
        selector_filters["date_to"] = day_bounds(last_day - timedelta(days=1))[1]
    pages = walk(client_for(history), "/api/v1/me/actions", **query)
    forward = forward_pages(pages)
    expected = expected_actions(history, **selector_filters)
    assert rendered(pages, forward) == expected
    assert [p["results"] for p in pages[forward:]] == [p["results"] for p in reversed(pages[: forward - 1])]
    if filters in ({}, {"methodology": "bus_ride"}):
        assert len(expected) == 12  # the neighbour's rides never show
    if "date_from" in filters or "date_to" in filters:
        assert 0 < len(expected) < 12


def forged(**cursor) -> str:
    return base64.b64encode(urlencode(cursor).encode()).decode()


@pytest.mark.parametrize("path", ["/api/v1/me/ledger", "/api/v1/me/actions"])
def test_forged_cursors_are_404_invalid_cursor_or_an_honest_page(history, path):
    client = client_for(history)
    everything = client.get(path, {"page_size": 100}).json()["results"]
    for position in ("abc", "1e3", "9" * 30, str(2**63), "", "-" + "9" * 20):
        response = client.get(path, {"cursor": forged(o=0, r=0, p=position)})
        assert response.status_code == 404, (position, response.content)
        assert response.json()["errors"][0]["code"] == "not_found"
    # A position past either end, an offset, a reversed cursor: pages of this resident's rows only.
    ids = [e["id"] for e in everything]
    assert [e["id"] for e in client.get(path, {"cursor": forged(o=2, r=0, p=2**62)}).json()["results"]] == ids[2:22]
    assert client.get(path, {"cursor": forged(o=0, r=0, p=-(2**63))}).json()["results"] == []
    back = client.get(path, {"cursor": forged(o=0, r=1, p=ids[0]), "page_size": 100}).json()
    assert back["results"] == []
    back = client.get(path, {"cursor": forged(o=0, r=1, p=ids[-1]), "page_size": 3}).json()
    assert [e["id"] for e in back["results"]] == ids[-4:-1]


def test_pages_follow_the_active_time_zone(history):
    from rest_framework import serializers

    from backend.actions.apis import action_item_writer
    from backend.ledger.apis import ledger_entry_writer

    assert client_for(history).get("/api/v1/me/ledger").json()["results"][0]["created_at"].endswith("+08:00")
    moments = [timezone.now(), timezone.now().replace(microsecond=0)]
    for zone in ("UTC", "Asia/Shanghai", "America/St_Johns"):
        with timezone.override(zone):
            ledger, action = ledger_entry_writer(), action_item_writer()
            for at in moments:
                declared = serializers.DateTimeField().to_representation(at)
                assert ledger(1, "k", "r", at, at, at.date(), "x", None, None, {})["created_at"] == declared
                assert action(1, "m", None, "s", at, "credited", "", 0, 0, at)["occurred_at"] == declared
            assert declared.endswith("Z") == (zone == "UTC")


def test_keyset_rows_do_only_what_the_cursor_pagination_asks():
    from backend.core.pagination import BIGINT_MAX, BIGINT_MIN, KeysetRows

    def fetch(**window):
        return [window]

    with pytest.raises(ValueError):
        KeysetRows(fetch).order_by("-created_at")
    with pytest.raises(ValueError):
        KeysetRows(fetch).order_by("-id").filter(id__gt=1)  # newest first continues below the position only
    assert KeysetRows(fetch).order_by("-id").filter(id__lt="5")[0:21] == [
        {"descending": True, "bound": 5, "offset": 0, "limit": 21}
    ]
    assert KeysetRows(fetch).order_by("-id")[0:21][0]["bound"] == BIGINT_MAX
    assert KeysetRows(fetch).order_by("id")[3:24] == [
        {"descending": False, "bound": BIGINT_MIN, "offset": 3, "limit": 21}
    ]
