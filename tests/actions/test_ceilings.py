"""Issue 11, part 3: every methodology has a ceiling; every declared validity rule is enforced."""

import pytest

from backend.actions.models import Action
from backend.actions.pipeline import actions_process
from backend.actions.services import binding_create
from tests.actions.attack_helpers import appliance, stored_action
from tests.actions.helpers import ride, signed_post


@pytest.fixture
def shop(partner_factory):
    return partner_factory(methodologies=["efficient_appliance"])


def appliance_item(external_id, identifier, data):
    return ride(external_id, methodology="efficient_appliance", kind="merchant_receipt", identifier=identifier, **data)


@pytest.mark.django_db
def test_absurd_appliance_baseline_is_never_credited(api, shop, resident):
    """Before: credited 677,600,000,000,000,000 g and as many points."""
    from backend.ledger.models import LedgerTransaction

    binding_create(resident=resident, kind="merchant_receipt", identifier="RCPT-1")
    body = {
        "actions": [
            appliance_item("a-1", "RCPT-1", appliance("SN-A1", annual_kwh_baseline=1e15)),
            appliance_item("a-2", "RCPT-1", appliance("SN-A2", annual_kwh_baseline="1000000000000000")),
        ]
    }
    results = signed_post(api, shop.pk, shop.secret, body).json()["results"]
    assert [(r["status"], r["error"]["code"], r["error"]["attr"]) for r in results] == [
        ("rejected", "invalid_data", "data.annual_kwh_baseline")
    ] * 2
    assert not Action.objects.filter(status="credited").exists()
    assert not LedgerTransaction.objects.filter(idempotency_key__startswith="action:").exists()


@pytest.mark.django_db
def test_stored_absurd_amount_is_rejected_implausible(shop, resident):
    """An action stored before today's bounds (or by a submission bug) is rejected in the pipeline."""
    binding_create(resident=resident, kind="merchant_receipt", identifier="RCPT-2")
    action = stored_action(
        shop,
        "s-1",
        methodology="efficient_appliance",
        kind="merchant_receipt",
        identifier="RCPT-2",
        data=appliance("SN-S1", annual_kwh_baseline="1000000000000000"),
    )
    actions_process(action_ids=[action.id])
    action.refresh_from_db()
    assert (action.status, action.reason, action.grams, action.points) == ("rejected", "implausible_amount", 0, 0)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"energy_label_grade": 3}, "energy_label_insufficient"),
        ({"energy_label_grade": None}, "energy_label_missing"),
        ({"e_invoice_number": None}, "e_invoice_missing"),
    ],
)
def test_declared_appliance_rules_are_enforced(api, shop, resident, overrides, reason):
    """Before: `energy_label_grade` and `e_invoice_required` were declared in v1 and checked nowhere."""
    binding_create(resident=resident, kind="merchant_receipt", identifier="RCPT-3")
    data = {k: v for k, v in appliance("SN-R1", **overrides).items() if v is not None}
    results = signed_post(api, shop.pk, shop.secret, {"actions": [appliance_item("r-1", "RCPT-3", data)]})
    assert results.json()["results"][0]["status"] == "accepted"
    action = Action.objects.get(external_id="r-1")
    assert (action.status, action.reason) == ("rejected", reason)


@pytest.mark.django_db
def test_good_appliance_is_credited(api, shop, resident):
    binding_create(resident=resident, kind="merchant_receipt", identifier="RCPT-4")
    signed_post(api, shop.pk, shop.secret, {"actions": [appliance_item("g-1", "RCPT-4", appliance("SN-G1"))]})
    action = Action.objects.get(external_id="g-1")
    assert (action.status, action.grams) == ("credited", 135520)  # 200 kWh x 677.6 g/kWh


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("data", "code"),
    [
        (appliance("SN-C1", annual_kwh_baseline="1000000000000000"), "implausible_amount"),
        (appliance("SN-C1", annual_kwh_baseline=1e15), "implausible_amount"),  # JSON 1000000000000000.0
    ],
)
def test_calculator_refuses_implausible_amounts(resident_client, data, code):
    """Before: 200 with 677,600,000,000,000,000 g."""
    response = resident_client.post(
        "/api/v1/methodologies/efficient_appliance/calculate", {"data": data}, format="json"
    )
    assert response.status_code == 400, response.content
    error = response.json()["errors"][0]
    assert (error["code"], error["attr"]) == (code, "data.annual_kwh_baseline")
