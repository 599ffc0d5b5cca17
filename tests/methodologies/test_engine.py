"""The engine with the seeded v1 parameters, to the exact gram."""

from decimal import Decimal

import pytest

from backend.methodologies.engine import (
    ActionDataInvalid,
    calculate,
    cap_quantity,
    check_validity,
    parse_action_data,
    points_for_grams,
)
from backend.methodologies.models import Methodology, MethodologyVersion, PointsPolicyVersion
from backend.methodologies.selectors import methodology_get, points_policy_at, version_at, versions_applicable

pytestmark = pytest.mark.django_db


def active(code: str) -> MethodologyVersion:
    return MethodologyVersion.objects.select_related("methodology").get(methodology__code=code, status="active")


def grams(code: str, data: dict, **kwargs) -> int:
    version = active(code)
    return calculate(version, parse_action_data(version.methodology, data), **kwargs).grams


@pytest.mark.parametrize(
    ("code", "data", "expected"),
    [
        ("bus_ride", {"distance_km": "10", "duration_s": "1500"}, 300),
        ("bus_ride", {"distance_km": "0.33"}, 9),  # 9.9 -> 9
        (
            "metro_ride",
            {"distance_km": "8.2", "duration_s": 900, "entry_station": "五四广场", "exit_station": "青岛站"},
            369,
        ),
        ("bike_ride", {"distance_km": "1.15", "duration_s": "400"}, 46),
        ("bike_ride", {"distance_km": 1.15, "duration_s": 400}, 46),  # float input: parsed from its digits
        ("bike_ride", {"distance_km": "2.999", "duration_s": "900"}, 119),  # 119.96 -> 119
        ("walk_steps", {"steps": 10000}, 200),
        ("walk_steps", {"steps": "12345"}, 246),  # 246.9 -> 246
        ("nev_charging", {"energy_kwh": "30.5"}, 8845),
        ("nev_charging", {"energy_kwh": "1.01"}, 292),  # 292.9 -> 292
        ("kitchen_waste", {"mass_kg": "2.345"}, 234),  # 234.5 -> 234
        ("efficient_appliance", {"annual_kwh_baseline": "500", "annual_kwh_product": "320", "serial": "SN1"}, 121968),
        ("efficient_appliance", {"annual_kwh_baseline": "300.5", "annual_kwh_product": "200.25", "serial": "S"}, 67929),
        ("paperless_bill", {"count": 2}, 30),
        ("reusable_cup", {"count": "3"}, 45),
        ("reusable_bag", {"count": 1}, 5),
    ],
)
def test_every_methodology_to_the_gram(reference_data, code, data, expected):
    assert grams(code, data) == expected


@pytest.mark.parametrize(
    ("material", "factor"),
    [
        ("paper", 300),
        ("cardboard", 300),
        ("plastic", 1000),
        ("pet", 1500),
        ("aluminium", 8100),
        ("steel", 1000),
        ("glass", 500),
        ("textile", 3600),
        ("e_waste", 1500),
    ],
)
def test_recycling_by_material(reference_data, material, factor):
    # 1.15 kg: exact decimal maths (a float 1.15 x 100 would be 114.999...).
    assert grams("recycling", {"mass_kg": "1.15", "material": material}) == int(Decimal("1.15") * factor)
    assert grams("recycling", {"mass_kg": "0.333", "material": material}) == int(Decimal("0.333") * factor // 1)


def test_decimal_string_that_float_gets_wrong(reference_data):
    # In binary floating point 1.15 * 100 = 114.99999999999999, which rounds down to 114.
    assert int(1.15 * 100) == 114
    assert grams("recycling", {"mass_kg": "1.15", "material": "paper"}) == 345
    bike = active("bike_ride")
    bike_data = parse_action_data(bike.methodology, {"distance_km": "1.15", "duration_s": "400"})
    assert bike_data["distance_km"] == Decimal("1.15")
    assert calculate(bike, bike_data).breakdown["net_g"] == "46.00"


def test_appliance_formula(reference_data):
    version = active("efficient_appliance")
    data = parse_action_data(
        version.methodology, {"annual_kwh_baseline": "410", "annual_kwh_product": "290", "serial": "X"}
    )
    result = calculate(version, data)
    assert result.grams == int((Decimal(410) - Decimal(290)) * Decimal("677.6") * 1)  # 81312
    assert result.breakdown["baseline_g"] == str(Decimal(410) * Decimal("677.6"))
    assert result.breakdown["project_g"] == str(Decimal(290) * Decimal("677.6"))


def test_rounding_happens_once_after_share_and_cap(reference_data):
    bus = active("bus_ride")
    data = parse_action_data(bus.methodology, {"distance_km": "0.95"})  # exact 28.5 g
    assert calculate(bus, data).grams == 28
    # Self-report share 0.5: floor(28.5 * 0.5) = floor(14.25) = 14 (not floor(28) * 0.5 = 14.0 by luck):
    assert calculate(bus, data, evidence_share=Decimal("0.5")).grams == 14
    bike = active("bike_ride")
    ride = parse_action_data(bike.methodology, {"distance_km": "3.3", "duration_s": "900"})  # 132 g, 3.3 km of cap
    result = calculate(bike, ride, evidence_share=Decimal("0.5"), credited_quantity=Decimal("1.1"))
    # floor(132 * 0.5 * 1.1 / 3.3) = floor(22) = 22
    assert result.grams == 22
    result = calculate(bike, ride, evidence_share=Decimal("0.5"), credited_quantity=Decimal("1"))
    assert result.grams == 20  # floor(66 / 3.3) = floor(20.0) = 20
    assert result.quantity == Decimal("3.3") and result.capped_quantity == Decimal("2.3")
    assert result.breakdown["cap"] == {
        "unit": "distance_km",
        "daily_limit": "30",
        "quantity": "3.3",
        "credited_quantity": "1",
        "capped_quantity": "2.3",
    }


def test_breakdown_is_readable_and_deterministic(reference_data):
    bus = active("bus_ride")
    data = parse_action_data(bus.methodology, {"distance_km": "10", "duration_s": "1500"})
    first, second = calculate(bus, data), calculate(bus, data)
    assert first == second
    assert first.breakdown["inputs"] == {"distance_km": "10", "duration_s": "1500"}
    assert first.breakdown["baseline_g"] == "750" and first.breakdown["project_g"] == "450"
    assert first.breakdown["net_g"] == "300"
    assert first.breakdown["parameters"]["baseline_g_per_pkm"] == {"value": "75", "unit": "g CO2e/pkm"}
    assert "floor" in first.breakdown["rounding"]


def test_per_trip_formula_type_needs_data_only(reference_data):
    # A new methodology of an existing formula type is data: no code change.
    methodology = Methodology.objects.create(
        code="ferry_trip", name_zh="轮渡", name_en="Ferry trip", formula_type="per_trip", data_schema={}
    )
    version = MethodologyVersion.objects.create(
        methodology=methodology,
        number=1,
        parameters={"g_per_trip": {"value": "150.7", "unit": "g CO2e/trip"}},
        evidence_shares={"partner": "1"},
    )
    assert calculate(version, parse_action_data(methodology, {})).grams == 150
    assert cap_quantity(version, {}) == 1


@pytest.mark.parametrize(
    ("code", "data", "field", "error_code"),
    [
        ("bus_ride", {}, "distance_km", "required"),
        ("bus_ride", {"distance_km": "ten"}, "distance_km", "invalid_number"),
        ("bus_ride", {"distance_km": "1e3"}, "distance_km", "invalid_number"),
        ("bus_ride", {"distance_km": True}, "distance_km", "invalid_number"),
        ("bus_ride", {"distance_km": "-1"}, "distance_km", "negative"),
        ("walk_steps", {"steps": "10.5"}, "steps", "invalid_number"),
        ("recycling", {"mass_kg": "1", "material": "wood"}, "material", "unknown_material"),
        ("recycling", {"mass_kg": "1"}, "material", "required"),
        ("metro_ride", {"distance_km": "5", "entry_station": "A"}, "exit_station", "required"),
        (
            "efficient_appliance",
            {"annual_kwh_baseline": "1", "annual_kwh_product": "0", "serial": 5},
            "serial",
            "invalid_string",
        ),
    ],
)
def test_parse_errors_name_field_and_code(reference_data, code, data, field, error_code):
    with pytest.raises(ActionDataInvalid) as caught:
        parse_action_data(methodology_get(code), data)
    assert (caught.value.field, caught.value.code) == (field, error_code)


def test_parse_normalises(reference_data):
    parsed = parse_action_data(methodology_get("recycling"), {"mass_kg": 2, "material": " PET ", "extra": "x"})
    assert parsed == {"mass_kg": Decimal(2), "material": "pet"}


@pytest.mark.parametrize(
    ("code", "data", "reason"),
    [
        ("bus_ride", {"distance_km": "0.29"}, "distance_out_of_range"),
        ("bus_ride", {"distance_km": "60.01"}, "distance_out_of_range"),
        ("bus_ride", {"distance_km": "30", "duration_s": "1799"}, "speed_implausible"),  # > 60 km/h
        ("bus_ride", {"distance_km": "30", "duration_s": "1800"}, None),  # exactly 60 km/h
        ("bus_ride", {"distance_km": "0.3"}, None),
        ("metro_ride", {"distance_km": "5", "entry_station": "A", "exit_station": "a"}, "same_station"),
        (
            "metro_ride",
            {"distance_km": "5", "duration_s": "199", "entry_station": "A", "exit_station": "B"},
            "speed_implausible",
        ),
        ("metro_ride", {"distance_km": "0.9", "entry_station": "A", "exit_station": "B"}, "distance_out_of_range"),
        ("bike_ride", {"distance_km": "2", "duration_s": "119"}, "duration_too_short"),
        ("bike_ride", {"distance_km": "0.49", "duration_s": "600"}, "distance_out_of_range"),
        ("bike_ride", {"distance_km": "5", "duration_s": "0"}, "duration_too_short"),
        ("bike_ride", {"distance_km": "5", "duration_s": "719"}, "speed_implausible"),  # > 25 km/h
        ("walk_steps", {"steps": "50001"}, "steps_out_of_range"),
        ("nev_charging", {"energy_kwh": "0.9"}, "energy_out_of_range"),
        ("nev_charging", {"energy_kwh": "120.1"}, "energy_out_of_range"),
        ("recycling", {"mass_kg": "0.04", "material": "glass"}, "mass_out_of_range"),
        ("recycling", {"mass_kg": "50.5", "material": "glass"}, "mass_out_of_range"),
        ("kitchen_waste", {"mass_kg": "10.01"}, "mass_out_of_range"),
        (
            "efficient_appliance",
            {"annual_kwh_baseline": "100", "annual_kwh_product": "100", "serial": "S"},
            "no_reduction",
        ),
        ("reusable_bag", {"count": 1}, None),
    ],
)
def test_validity_rules(reference_data, code, data, reason):
    version = active(code)
    assert check_validity(version, parse_action_data(version.methodology, data)) == reason


def test_history_rules_are_exposed_as_data(reference_data):
    assert active("recycling").validity_rules["duplicate_window_s"] == 300
    assert active("efficient_appliance").validity_rules["serial_unique_forever"] is True
    assert active("paperless_bill").validity_rules["one_per_biller_account_per_month"] is True


@pytest.mark.parametrize(
    ("code", "data", "quantity"),
    [
        ("bus_ride", {"distance_km": "10"}, Decimal(1)),
        ("bike_ride", {"distance_km": "3.3", "duration_s": "900"}, Decimal("3.3")),
        ("walk_steps", {"steps": 8000}, Decimal(8000)),
        ("recycling", {"mass_kg": "2.5", "material": "paper"}, Decimal("2.5")),
        ("reusable_cup", {"count": 2}, Decimal(2)),
    ],
)
def test_cap_quantity(reference_data, code, data, quantity):
    version = active(code)
    assert cap_quantity(version, parse_action_data(version.methodology, data)) == quantity


def test_points_and_policy_lookup(reference_data):
    from datetime import UTC, datetime

    policy = points_policy_at(datetime(2026, 6, 1, tzinfo=UTC))
    assert policy.points_per_gram == 1 and policy.lot_expiry_months == 12
    assert points_for_grams(369, policy) == 369
    assert points_for_grams(369, PointsPolicyVersion(points_per_gram=Decimal("0.5"))) == 184
    with pytest.raises(PointsPolicyVersion.DoesNotExist):
        points_policy_at(datetime(2025, 6, 1, tzinfo=UTC))


def test_versions_applicable_and_version_at(reference_data, django_assert_num_queries):
    from datetime import UTC, datetime

    with django_assert_num_queries(1):
        versions = versions_applicable(["bus_ride", "metro_ride", "nope"])
    assert [v.number for v in versions["bus_ride"]] == [1] and versions["nope"] == []
    assert version_at(versions["bus_ride"], datetime(2026, 3, 1, tzinfo=UTC)).number == 1
    assert version_at(versions["bus_ride"], datetime(2025, 12, 31, 15, 59, tzinfo=UTC)) is None  # before 00:00 +08
