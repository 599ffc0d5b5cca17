"""Exact query counts of the list endpoints, each run with two or more rows of every related object (a loose
maximum hides an N+1: the count must not move when rows are added). The signed-in user's row comes from the
auth cache (backend/accounts/authentication.py), warmed by a first request: it costs no query."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from backend.ledger.services import action_credits_post_bulk
from backend.methodologies import services as methodology_services
from tests.conftest import client_for
from tests.ledger.helpers import credit
from tests.rewards.conftest import merchant_factory  # noqa: F401 (the fixture, shared with the rewards tests)

pytestmark = pytest.mark.django_db


def queries(client, url) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, response.content
    return len(captured.captured_queries)


def grow(reviewer, author):
    """More rows of every related object: credits (each with carbon and points postings), consents, Merkle
    roots, versions with several transitions, a second points-policy version."""
    from backend.accounts.models import Consent
    from backend.ledger.models import MerkleRoot

    action_credits_post_bulk(credits=[credit(reviewer.id, points=10 + i) for i in range(3)])
    Consent.objects.create(user=reviewer, kind=Consent.Kind.PARTNER_DATA, version="x", withdrawn_at="2026-01-01T00:00Z")
    day = MerkleRoot.objects.count()
    MerkleRoot.objects.create(day=f"2026-01-{day + 1:02d}", root="00" * 32, leaf_count=0)
    for create, submit in (
        (methodology_services.methodology_version_create_draft, methodology_services.methodology_version_submit),
        (methodology_services.points_policy_version_create_draft, methodology_services.points_policy_version_submit),
    ):
        kwargs = {"code": "bus_ride"} if create is methodology_services.methodology_version_create_draft else {}
        draft = create(author=author, **kwargs)
        draft.effective_from = "2099-01-01T00:00:00+08:00"
        draft.save(update_fields=["effective_from"])
        submit(version_id=draft.id, actor=author, note="for the query counts")


@pytest.mark.parametrize(
    ("url", "signed_in", "expected"),
    [
        ("/api/v1/me/ledger", True, 1),  # the page with the resident's amounts per transaction (PAGE_SQL)
        ("/api/v1/me/actions", True, 1),  # the page with the versions' numbers
        ("/api/v1/me/wallet", True, 1),
        ("/api/v1/me/consents", True, 1),
        ("/api/v1/public/ledger/roots", False, 1),
        ("/api/v1/districts", False, 1),
        ("/api/v1/methodologies", False, 2),  # methodologies, their active versions
        ("/api/v1/methodologies/bus_ride/versions", False, 3),  # methodology, versions, transitions
        ("/api/v1/points-policy/versions", False, 2),  # versions, transitions
        ("/api/v1/admin/methodologies/bus_ride/versions", True, 3),
        ("/api/v1/admin/points-policy/versions", True, 2),
    ],
)
def test_list_query_counts_are_exact_and_do_not_grow_with_rows(make_user, seeded, api, url, signed_in, expected):
    reviewer, author = make_user(role="reviewer"), make_user(role="reviewer")
    client = client_for(reviewer) if signed_in else api
    grow(reviewer, author)
    if signed_in:
        client.get("/api/v1/me")  # caches the user row
    assert queries(client, url) == expected
    grow(reviewer, author)
    assert queries(client, url) == expected


# --- lists paginated in the API-contract round, and the reviewers' version lists in the admin -------------------

_grown = iter(range(1, 1_000_000))


def test_districts_list_is_one_query_however_many_districts(api):
    from backend.accounts.models import District

    for _round in range(2):
        for _ in range(2):
            n = next(_grown)
            District.objects.create(code=f"39{n:04d}", name_zh=f"区{n}", name_en=f"D{n}", co2_intensity_target_pct=1)
        assert queries(api, "/api/v1/districts") == 1


def test_my_bindings_list_is_exact_with_cards_from_several_partners(make_user, partner_factory):
    from backend.actions import links

    resident = make_user()
    client = client_for(resident)
    client.get("/api/v1/me")  # caches the user row
    for _round in range(2):
        for kind in ("transit_card", "bike_account"):  # two more cards, each from a partner of its own
            card = f"QC-{next(_grown):06d}"
            links.binding_create(resident=resident, kind=kind, identifier=card, partner=partner_factory())
        assert queries(client, "/api/v1/me/bindings") == 1  # the page of bindings (the user row is cached)


def test_merchant_staff_list_is_exact_with_several_members(merchant_factory):  # noqa: F811
    from rewards import catalogue
    from tests.conftest import PASSWORD, next_phone

    merchant, manager = merchant_factory()
    manager.client.get("/api/v1/me")  # caches the user row
    for _round in range(2):
        for is_manager in (False, True):
            catalogue.staff_add(merchant=merchant, phone=next_phone(), password=PASSWORD, is_manager=is_manager)
        # the caller's staff link with its merchant, the page of members with their users (the user row is cached)
        assert queries(manager.client, "/api/v1/merchant/staff") == 2


def admin_client(user):
    from django.test import Client

    from tests.conftest import PASSWORD

    client = Client(headers={"accept-language": "en"})
    client.post("/admin/login/", {"username": user.raw_phone, "password": PASSWORD})
    assert "_auth_user_id" in client.session
    return client


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("/admin/methodologies/methodologyversion/", 8),
        ("/admin/methodologies/pointspolicyversion/", 7),
    ],
)
def test_admin_version_changelists_are_exact_with_several_versions(make_user, seeded, url, expected):
    """Each round adds a methodology and a points-policy version by an author of its own, submitted, and the
    methodology version approved by the signed-in reviewer (so authors and deciders are several users): the
    changelist's queries stay the same (session, user, two permission queries, the methodology filter's
    choices, Django's filtered and total counts, the page with methodology, author and decider joined)."""
    from backend.methodologies.models import MethodologyVersion, VersionStatus

    reviewer = make_user(role="reviewer")
    client = admin_client(reviewer)
    for _round in range(2):
        grow(reviewer, make_user(role="reviewer"))
        submitted = MethodologyVersion.objects.filter(status=VersionStatus.IN_REVIEW).latest("id")
        methodology_services.methodology_version_approve(version_id=submitted.id, actor=reviewer, note="ok")
        assert queries(client, url) == expected
