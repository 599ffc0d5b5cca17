"""The quick-start demo (`make run` -> `manage.py seed --demo`): seeded through the real services, idempotent,
its people can log in, its rides are credited and its credits prove against a published Merkle root."""

import io
from datetime import datetime, timedelta

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
from tests.ledger.test_merkle_and_api import verify

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


def test_demo_credits_prove_against_their_days_roots_on_the_first_try(reference_data):
    """Right after seeding, with no clock games and no root job run: every demo credit before today proves
    against its (already published) day's root and verifies offline; today's credits wait for tonight's root.
    (Before `booked_on`, the demo's credits were all created "today", so each of these proofs answered 409.)"""
    seed()
    today = timezone.now().astimezone(SHANGHAI).date()
    for phone in (phone for phone, role, *_ in PEOPLE if role == User.Role.RESIDENT):
        resident = login(phone)
        page, entries = resident.get("/api/v1/me/ledger").json(), []
        while True:
            entries += page["results"]
            if not page["next"]:
                break
            page = resident.get(page["next"]).json()
        past = [e for e in entries if e["booked_on"] < today.isoformat()]
        assert len(past) >= 2 * 5, entries  # a week of rides, twice a day: at least five finished days
        for entry in entries:
            proof = resident.get(entry["proof_url"])
            if entry in past:
                assert proof.status_code == 200, proof.content
                body = proof.json()
                # Booked on the day the ride happened, proven against that day's published root.
                effective_day = datetime.fromisoformat(entry["effective_at"]).astimezone(SHANGHAI).date()
                assert body["day"] == entry["booked_on"] == effective_day.isoformat()
                assert body["root"] == MerkleRoot.objects.get(day=effective_day).root
                assert verify(body["leaf"], body["proof"], body["root"])
            else:
                assert entry["booked_on"] == today.isoformat()
                assert proof.status_code == 409 and proof.json()["errors"][0]["code"] == "proof_not_ready"
    call_command("ledger_verify", verbosity=0)  # every root reproducible from the ledger
