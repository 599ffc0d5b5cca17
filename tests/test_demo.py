"""The quick-start demo (`make run` -> `manage.py seed --demo`): seeded through the real services, idempotent,
its people can log in, its rides are credited and its credits prove against a published Merkle root."""

import io
from datetime import timedelta
from unittest import mock

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from backend.accounts.models import User
from backend.actions.models import Action, IngestBatch, SubjectBinding
from backend.core.fields import SHANGHAI
from backend.demo import DEMO_PASSWORD, PEOPLE
from backend.ledger.models import LedgerTransaction, MerkleRoot
from backend.partners.models import Partner, PartnerSecret

pytestmark = pytest.mark.django_db

MODELS = (User, Partner, PartnerSecret, SubjectBinding, Action, IngestBatch, LedgerTransaction, MerkleRoot)


def snapshot() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in MODELS}


def seed() -> str:
    out = io.StringIO()
    call_command("seed", "--demo", stdout=out)
    return out.getvalue()


def login(phone: str) -> APIClient:
    api = APIClient()
    response = api.post("/api/v1/auth/token", {"phone": phone, "password": DEMO_PASSWORD}, format="json")
    assert response.status_code == 200, response.content
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['access']}")
    return api


def test_demo_seed_is_idempotent_and_everyone_can_log_in(reference_data):
    first = seed()
    after_first = snapshot()
    second = seed()

    assert snapshot() == after_first  # nothing duplicated: users, cards, rides, batches, ledger, roots
    assert "demo: created partner, resident, resident, reviewer, admin" in first
    assert "demo: already in place, nothing created" in second
    secret = first.split("secret ")[1].split()[0]
    assert len(secret) == 64 and f"secret {secret}" in second  # the same live secret shown again
    assert "methodologies: 0 row(s) created or updated; in place: 11 methodologies, 11 active versions" in second
    assert "districts: 0 row(s) created or updated; in place: 10 districts" in second

    residents = [phone for phone, role, *_ in PEOPLE if role == User.Role.RESIDENT]
    assert SubjectBinding.objects.live().filter(resident__role=User.Role.RESIDENT).count() == len(residents)
    for phone, role, name, *_ in PEOPLE:
        assert f"demo login: {role:<9} phone {phone} password {DEMO_PASSWORD}" in first
        api = login(phone)
        assert api.get("/api/v1/me").json()["display_name"] == name
    for phone in residents:
        wallet = login(phone).get("/api/v1/me/wallet").json()
        assert wallet["carbon_g"] > 0 and wallet["points_balance"] > 0, wallet
    # A week of rides, twice a day, all credited (none capped, none left waiting).
    rides = Action.objects.filter(external_id__startswith="demo-")
    assert rides.count() >= 2 * 2 * 6 and set(rides.values_list("status", flat=True)) == {Action.Status.CREDITED}

    today = timezone.now().astimezone(SHANGHAI).date()
    rooted = set(MerkleRoot.objects.values_list("day", flat=True))
    assert {today - timedelta(days=back) for back in range(1, 8)} <= rooted  # the week's finished days


def test_a_demo_credit_proves_against_its_days_root(reference_data):
    seed()
    resident = login(PEOPLE[0][0])
    entry = resident.get("/api/v1/me/ledger").json()["results"][0]
    # Today's credits get their root once the day is over (the nightly beat task); move the clock past midnight.
    day = timezone.now().astimezone(SHANGHAI).date()
    tomorrow = timezone.now() + timedelta(days=1)
    with mock.patch.object(timezone, "now", return_value=tomorrow):
        call_command("ledger_root", "--day", day.isoformat(), stdout=io.StringIO())
    proof = resident.get(f"/api/v1/me/ledger/{entry['id']}/proof")
    assert proof.status_code == 200, proof.content
    assert proof.json()["root"] == MerkleRoot.objects.get(day=day).root
