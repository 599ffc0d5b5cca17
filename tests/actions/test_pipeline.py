"""From a partner's record to credited grams and points."""

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from backend.accounts.services import consent_set
from backend.actions.models import Action
from backend.actions.pipeline import actions_process
from backend.actions.services import binding_create
from tests.actions.helpers import link_card, ride, signed_post
from tests.conftest import client_for

SHANGHAI = ZoneInfo("Asia/Shanghai")


def submit(api, partner, items):
    response = signed_post(api, partner.pk, partner.secret, {"actions": items})
    assert response.status_code == 202, response.json()
    return response.json()["results"]


def yesterday_at(hour, minute=0):
    """`hour` o'clock yesterday in Asia/Shanghai: a whole calendar day that is over, so rides spread across
    it are all in the past and on one cap day, whatever time the suite runs."""
    now = timezone.now().astimezone(SHANGHAI)
    return now.replace(hour=hour, minute=minute, second=0, microsecond=0) - timedelta(days=1)


@pytest.fixture
def bound(resident):
    binding_create(resident=resident, kind="transit_card", identifier="3100-0000-0001")
    return resident


@pytest.mark.django_db
def test_bus_ride_of_10_km_credited_at_v1_factors(api, partner, bound):
    submit(api, partner, [ride("bus-1", identifier="3100-0000-0001", distance_km="10", duration_s=1800)])

    action = Action.objects.get(external_id="bus-1")
    assert action.status == "credited"
    assert action.resident_id == bound.id
    # (75 - 45) g/pkm * 10 km = 300 g; 1 point per gram
    assert action.grams == 300
    assert action.points == 300
    assert action.methodology_version.number == 1
    detail = client_for(bound).get(f"/api/v1/me/actions/{action.id}").json()
    assert detail["grams"] == 300
    assert detail["breakdown"]
    assert [h["status"] for h in detail["history"]] == ["received", "credited"]
    wallet = client_for(bound).get("/api/v1/me/wallet").json()
    assert wallet["carbon_g"] == 300
    assert wallet["points_balance"] == 300


@pytest.mark.django_db
def test_seven_bus_rides_in_a_day_six_credited_seventh_capped(api, partner, bound):
    start = yesterday_at(7)
    items = [ride(f"day-{i}", identifier="3100-0000-0001", at=start + timedelta(minutes=40 * i)) for i in range(7)]
    submit(api, partner, items)

    statuses = list(
        Action.objects.filter(external_id__startswith="day-").order_by("occurred_at").values_list("status", "grams")
    )
    assert statuses[:6] == [("credited", 300)] * 6
    assert statuses[6] == ("capped", 0)
    seventh = Action.objects.get(external_id="day-6")
    assert seventh.reason == "daily_cap_reached"
    assert seventh.capped_quantity == 1
    # Visible to the resident, not silently dropped.
    listed = client_for(bound).get("/api/v1/me/actions", {"status": "capped"}).json()["results"]
    assert [a["id"] for a in listed] == [seventh.id]


@pytest.mark.django_db
def test_cap_holds_across_batches(api, partner, bound):
    start = yesterday_at(6)
    submit(
        api,
        partner,
        [ride(f"b1-{i}", identifier="3100-0000-0001", at=start + timedelta(minutes=40 * i)) for i in range(4)],
    )
    submit(
        api,
        partner,
        [ride(f"b2-{i}", identifier="3100-0000-0001", at=start + timedelta(minutes=300 + 40 * i)) for i in range(4)],
    )
    assert Action.objects.filter(status="credited").count() == 6
    assert Action.objects.filter(status="capped").count() == 2


@pytest.mark.django_db
def test_bike_ride_at_40_kmh_rejected(api, partner_factory, resident):
    partner = partner_factory(methodologies=["bike_ride"])
    binding_create(resident=resident, kind="bike_account", identifier="bike-77")
    # 10 km in 15 minutes = 40 km/h, above the 25 km/h plausibility limit
    submit(
        api,
        partner,
        [
            ride(
                "fast",
                methodology="bike_ride",
                kind="bike_account",
                identifier="bike-77",
                distance_km="10",
                duration_s=900,
            )
        ],
    )
    action = Action.objects.get(external_id="fast")
    assert action.status == "rejected"
    assert action.reason == "speed_implausible"
    assert action.grams == 0
    from backend.ledger.models import LedgerTransaction

    assert not LedgerTransaction.objects.filter(idempotency_key=f"action:{action.id}").exists()


@pytest.mark.django_db
def test_unbound_then_linked_then_credited(api, partner, resident):
    submit(api, partner, [ride("early", identifier="NEW-CARD-9", distance_km="5", duration_s=900)])
    action = Action.objects.get(external_id="early")
    assert action.status == "unclaimed"
    assert action.resident_id is None

    response = link_card(resident, partner, identifier="new-card-9")
    assert response.status_code == 201, response.content
    assert response.json()["claimed"] == {"credited": 1}
    assert client_for(resident).get("/api/v1/me/bindings").json()["results"][0]["identifier"] == "****RD-9"
    action.refresh_from_db()
    assert action.status == "credited"
    assert action.resident_id == resident.id
    assert action.grams == 150


@pytest.mark.django_db
def test_history_keeps_every_outcome_without_a_row_per_processed_action(api, partner, resident):
    """Issue 17: the pipeline stores no status-history row (its outcome is on the action row); claiming writes
    the earlier `unclaimed` outcome down first, so the history still shows every step in order."""
    from backend.actions.models import ActionStatusChange

    submit(api, partner, [ride("early", identifier="NEW-CARD-7", distance_km="5", duration_s=900)])
    action = Action.objects.get(external_id="early")
    assert (action.status, ActionStatusChange.objects.count()) == ("unclaimed", 0)

    link_card(resident, partner, identifier="new-card-7")
    history = client_for(resident).get(f"/api/v1/me/actions/{action.id}").json()["history"]
    assert [(h["status"], h["reason"]) for h in history] == [
        ("received", ""),
        ("unclaimed", "subject_not_bound"),
        ("credited", ""),
    ]
    assert [h["at"] for h in history] == sorted(h["at"] for h in history)
    assert ActionStatusChange.objects.count() == 1  # the claimed action's earlier outcome only


@pytest.mark.django_db
def test_bindings_store_no_identifier_and_unlink_by_id(resident, partner):
    link_card(resident, partner, identifier="3100999988887777")
    binding = resident.bindings.get()
    assert "3100999988887777" not in (binding.identifier_hash + binding.identifier_last4)
    listed = client_for(resident).get("/api/v1/me/bindings").json()["results"]
    assert listed[0]["identifier"] == "****7777"
    assert client_for(resident).delete(f"/api/v1/me/bindings/{binding.id}").status_code == 204
    assert client_for(resident).get("/api/v1/me/bindings").json()["results"] == []
    binding.refresh_from_db()
    assert (binding.ended_at is not None, binding.end_reason) == (True, "resident_unlinked")


@pytest.mark.django_db
def test_consent_withdrawn_means_not_credited(api, partner, bound):
    consent_set(user=bound, kind="partner_data", granted=False)
    submit(api, partner, [ride("after-withdrawal", identifier="3100-0000-0001")])
    action = Action.objects.get(external_id="after-withdrawal")
    assert action.status == "rejected"
    assert action.reason == "consent_missing"
    assert action.points == 0
    assert client_for(bound).get("/api/v1/me/wallet").json()["points_balance"] == 0


@pytest.mark.django_db
def test_double_claim_from_two_sources_is_flagged_then_reviewed(api, partner_factory, bound, reviewer):
    metro_a = partner_factory(methodologies=["bus_ride"])
    metro_b = partner_factory(methodologies=["bus_ride"])
    at = timezone.now() - timedelta(hours=2)
    submit(api, metro_a, [ride("a-1", identifier="3100-0000-0001", at=at)])
    binding_create(resident=bound, kind="metro_card", identifier="M-1")
    submit(api, metro_b, [ride("b-1", kind="metro_card", identifier="M-1", at=at + timedelta(minutes=10))])

    flagged = Action.objects.get(external_id="b-1")
    assert flagged.status == "flagged"
    assert flagged.reason == "double_claim"
    wallet = client_for(bound).get("/api/v1/me/wallet").json()
    assert wallet["points_balance"] == 300
    assert wallet["points_pending"] == 300

    queue = client_for(reviewer).get("/api/v1/admin/reviews").json()["results"]
    assert [a["id"] for a in queue] == [flagged.id]
    response = client_for(reviewer).post(
        f"/api/v1/admin/reviews/{flagged.id}/reject", {"note": "same trip"}, format="json"
    )
    assert response.status_code == 200
    flagged.refresh_from_db()
    assert flagged.status == "rejected"
    wallet = client_for(bound).get("/api/v1/me/wallet").json()
    assert wallet["points_pending"] == 0
    assert wallet["points_balance"] == 300


@pytest.mark.django_db
def test_residents_cannot_review(resident_client):
    assert resident_client.get("/api/v1/admin/reviews").status_code == 403


@pytest.mark.django_db
def test_processing_twice_changes_nothing(api, partner, bound):
    submit(api, partner, [ride("once", identifier="3100-0000-0001")])
    action = Action.objects.get(external_id="once")
    Action.objects.filter(pk=action.pk).update(status="received")  # as if the task were delivered again
    actions_process(action_ids=[action.pk])
    from backend.ledger.models import LedgerTransaction

    assert LedgerTransaction.objects.filter(idempotency_key=f"action:{action.pk}").count() == 1


@pytest.mark.django_db
def test_batch_processing_costs_a_bounded_number_of_queries(api, partner, bound, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def run(prefix, n, hour):
        start = yesterday_at(hour) - timedelta(days=2)
        items = [ride(f"{prefix}-{i}", identifier="3100-0000-0001", at=start + timedelta(seconds=i)) for i in range(n)]
        # Stop processing on commit: measure the pipeline alone.
        from unittest import mock

        with mock.patch("backend.actions.services.enqueue_batch"):
            submit(api, partner, items)
        ids = list(Action.objects.filter(external_id__startswith=f"{prefix}-").values_list("id", flat=True))
        with CaptureQueriesContext(connection) as ctx:
            actions_process(action_ids=ids)
        return len(ctx.captured_queries)

    small, large = run("s", 5, 8), run("l", 300, 9)
    assert large <= small + 2, (small, large)


@pytest.fixture
def household(resident, partner_factory):
    partner = partner_factory(methodologies=["recycling", "efficient_appliance", "paperless_bill"])
    for kind, identifier in (
        ("recycling_account", "HH-1"),
        ("merchant_receipt", "RCPT-1"),
        ("charging_account", "BILLER-1"),
    ):
        binding_create(resident=resident, kind=kind, identifier=identifier)
    return partner


@pytest.mark.django_db
def test_recycling_same_material_within_five_minutes_is_a_duplicate(api, household):
    at = timezone.now() - timedelta(hours=3)
    kw = {"methodology": "recycling", "kind": "recycling_account", "identifier": "HH-1"}
    submit(
        api,
        household,
        [
            ride("w-1", at=at, mass_kg="2", material="paper", **kw),
            ride("w-2", at=at + timedelta(minutes=3), mass_kg="2", material="paper", **kw),  # duplicate
            ride("w-3", at=at + timedelta(minutes=3), mass_kg="1", material="glass", **kw),  # other material
            ride("w-4", at=at + timedelta(minutes=6), mass_kg="2", material="paper", **kw),  # window passed
        ],
    )
    statuses = dict(Action.objects.values_list("external_id", "status"))
    assert statuses == {"w-1": "credited", "w-2": "rejected", "w-3": "credited", "w-4": "credited"}
    assert Action.objects.get(external_id="w-2").reason == "duplicate_weighing"
    assert Action.objects.get(external_id="w-1").grams == 600  # 2 kg paper x 300 g/kg


@pytest.mark.django_db
def test_appliance_serial_earns_once_ever(api, household):
    kw = {"methodology": "efficient_appliance", "kind": "merchant_receipt", "identifier": "RCPT-1"}
    data = {
        "annual_kwh_baseline": "500",
        "annual_kwh_product": "320",
        "energy_label_grade": 1,
        "e_invoice_number": "F1",
    }
    submit(api, household, [ride("a-1", minutes_ago=300, serial="SN-42", **kw, **data)])
    submit(api, household, [ride("a-2", minutes_ago=200, serial="sn-42", **kw, **data)])
    assert Action.objects.get(external_id="a-1").grams == 121968  # (500-320) x 677.6 x 1
    second = Action.objects.get(external_id="a-2")
    assert (second.status, second.reason) == ("rejected", "serial_already_credited")


@pytest.mark.django_db
def test_paperless_bill_once_per_biller_account_per_month(api, household):
    kw = {"methodology": "paperless_bill", "kind": "charging_account", "identifier": "BILLER-1"}
    submit(
        api, household, [ride("p-1", minutes_ago=120, count="1", **kw), ride("p-2", minutes_ago=60, count="1", **kw)]
    )
    assert dict(Action.objects.values_list("external_id", "reason")) == {
        "p-1": "",
        "p-2": "already_credited_this_month",
    }


@pytest.mark.django_db
def test_unclaimed_records_are_deleted_after_30_days(api, partner):
    from backend.actions.services import unclaimed_expire

    submit(api, partner, [ride("orphan", identifier="NOBODY-1")])
    assert Action.objects.get(external_id="orphan").status == "unclaimed"
    assert unclaimed_expire(now=timezone.now() + timedelta(days=29)) == 0
    assert unclaimed_expire(now=timezone.now() + timedelta(days=31)) >= 1
    assert not Action.objects.filter(external_id="orphan").exists()


@pytest.mark.django_db
def test_one_action_breaking_the_engine_does_not_poison_its_batch(api, partner, bound, monkeypatch):
    from backend.methodologies import engine

    real_calculate = engine.calculate

    def calculate(version, data, **kwargs):
        if data.get("distance_km") == engine.parse_decimal("13.13"):
            raise RuntimeError("a rule nobody foresaw")
        return real_calculate(version, data, **kwargs)

    monkeypatch.setattr(engine, "calculate", calculate)
    start = yesterday_at(6) - timedelta(days=1)
    submit(
        api,
        partner,
        [
            ride("fine-1", identifier="3100-0000-0001", at=start, distance_km="5", duration_s=900),
            ride(
                "poison",
                identifier="3100-0000-0001",
                at=start + timedelta(hours=1),
                distance_km="13.13",
                duration_s=1800,
            ),
            ride("fine-2", identifier="3100-0000-0001", at=start + timedelta(hours=2), distance_km="5", duration_s=900),
        ],
    )
    statuses = dict(Action.objects.values_list("external_id", "status"))
    assert statuses == {"fine-1": "credited", "poison": "rejected", "fine-2": "credited"}
    poison = Action.objects.get(external_id="poison")
    from backend.ledger.models import LedgerTransaction

    assert (poison.reason, poison.grams) == ("processing_error", 0)
    assert not LedgerTransaction.objects.filter(idempotency_key=f"action:{poison.id}").exists()
    # The failed ride did not use up a ride of the daily cap.
    from backend.actions.models import DailyCapUsage

    assert DailyCapUsage.objects.get(resident=bound, methodology="bus_ride").used == 2


@pytest.mark.django_db
def test_a_crash_after_reserving_caps_does_not_take_the_cap_twice(api, partner, bound, monkeypatch):
    """The cap is reserved in its own short transaction; if crediting then fails, the retry reuses it."""
    from unittest import mock

    from backend.actions import pipeline
    from backend.actions.models import DailyCapUsage

    start = yesterday_at(6) - timedelta(days=1)
    items = [ride(f"crash-{i}", identifier="3100-0000-0001", at=start + timedelta(minutes=40 * i)) for i in range(4)]
    with mock.patch("backend.actions.services.enqueue_batch"):
        submit(api, partner, items)
    ids = list(Action.objects.values_list("id", flat=True))

    with (
        mock.patch.object(pipeline.process, "write_outcomes", side_effect=RuntimeError("worker died")),
        pytest.raises(RuntimeError),
    ):
        pipeline.actions_process(action_ids=ids)
    assert set(Action.objects.values_list("status", flat=True)) == {"received"}
    usage = DailyCapUsage.objects.get(resident=bound)
    assert (usage.used, len(usage.reservations)) == (4, 4)  # one reservation per action, on the usage row

    pipeline.actions_process(action_ids=ids)  # the retry
    assert set(Action.objects.values_list("status", flat=True)) == {"credited"}
    assert DailyCapUsage.objects.get(resident=bound).used == 4  # not 8
