"""The default Qingdao v1 catalogue (../shared/methodologies.md), copied here so a deployment needs no shared/
folder. Seeded once as version 1 of each methodology, active from 2026-01-01 00:00 Asia/Shanghai; later
changes go through the review workflow, never through this file."""

from datetime import date

from backend.core.days import day_start

V1_EFFECTIVE_FROM = day_start(date(2026, 1, 1))

MATERIALS = ["paper", "cardboard", "plastic", "pet", "aluminium", "steel", "glass", "textile", "e_waste"]

REQ_STRING = {"type": "string", "required": True}
OPT_STRING = {"type": "string", "required": False}


def _num(kind: str, high: str, *, required: bool = True, digits: int = 3, low: str = "0") -> dict:
    """A numeric data field with its hard bounds (issue 11): parsing refuses anything outside them
    (`invalid_data` at submission, `implausible_amount` in the pipeline and the calculator). The bounds are
    what the physical world allows, wider than a version's plausibility rules (which may change per version)."""
    spec = {"type": kind, "required": required, "min": low, "max": high}
    if kind == "decimal":
        spec["digits"] = digits
    return spec


# Real-world bounds: a city trip is under 200 km and a day long; a day's walk under 100,000 steps; the largest
# EV batteries hold about 200 kWh; a household's recycling drop-off is under 500 kg; a household appliance
# uses well under 5,000 kWh a year (a large fridge 300-600, an air conditioner 1,000-2,000).
DISTANCE_KM = _num("decimal", "200")
DURATION_S = _num("decimal", "86400", required=False, digits=0)

SHARES_PARTNER = {"partner": "1", "merchant_receipt": "1"}
SHARES_WITH_SELF = {"partner": "1", "merchant_receipt": "1", "self_report": "0.5"}

SRC_DESNZ = {
    "title": "UK DESNZ greenhouse gas conversion factors",
    "url": "https://www.gov.uk/government/collections/government-conversion-factors-for-company-reporting",
}
SRC_SHENZHEN = {
    "title": "Shenzhen 低碳公共出行 carbon-inclusion methodology (EV bus 26.9 g/pkm, metro 46.7 g/pkm saved)"
}
SRC_WUHAN = {"title": "Wuhan 碳普惠 (碳碳星球) methodology: bike 40 g/km, 0.02 g/step, shopping bag 5 g/use"}
SRC_GRID = {"title": "MEE/NBS 2022 grid emission factors (published Dec 2024): North China 0.6776 kg CO2/kWh"}
SRC_STANDARD = {"title": "GB/T 33760 & ISO 14064-2; DB11/T 3043-2024: reduction = baseline − project emissions"}


def _p(value, unit):
    return {"value": value, "unit": unit}


def _est(note):
    return {"title": "Qingdao v1 engineering estimate", "note": note}


# (code, name_zh, name_en, formula_type, data_schema, version fields)
CATALOGUE = [
    (
        "bus_ride",
        "公交出行",
        "Bus ride",
        "per_distance",
        {"distance_km": DISTANCE_KM, "duration_s": DURATION_S},
        {
            "parameters": {"baseline_g_per_pkm": _p("75", "g CO2e/pkm"), "project_g_per_pkm": _p("45", "g CO2e/pkm")},
            "validity_rules": {
                "min_distance_km": "0.3",
                "max_distance_km": "60",
                "max_speed_kmh": "60",
                "max_grams_per_action": 2000,
            },
            "daily_cap": {"unit": "actions", "limit": "6"},
            "evidence_shares": SHARES_WITH_SELF,
            "self_report_allowed": True,
            "evidence_description": "Transit operator tap records (琴岛通 card, QR, NFC).",
            "sources": [_est("net 30 g/pkm, near Shenzhen's 26.9"), SRC_SHENZHEN, SRC_DESNZ, SRC_STANDARD],
        },
    ),
    (
        "metro_ride",
        "地铁出行",
        "Metro ride",
        "per_distance",
        {
            "distance_km": DISTANCE_KM,
            "duration_s": DURATION_S,
            "entry_station": REQ_STRING,
            "exit_station": REQ_STRING,
        },
        {
            "parameters": {"baseline_g_per_pkm": _p("75", "g CO2e/pkm"), "project_g_per_pkm": _p("30", "g CO2e/pkm")},
            "validity_rules": {
                "distinct_stations": True,
                "min_distance_km": "1",
                "max_distance_km": "80",
                "max_speed_kmh": "90",
                "max_grams_per_action": 4000,
            },
            "daily_cap": {"unit": "actions", "limit": "6"},
            "evidence_shares": SHARES_WITH_SELF,
            "self_report_allowed": True,
            "evidence_description": "Metro gate records.",
            "sources": [_est("net 45 g/pkm, Shenzhen 46.7"), SRC_SHENZHEN, SRC_DESNZ, SRC_STANDARD],
        },
    ),
    (
        "bike_ride",
        "骑行",
        "Bike ride",
        "per_distance",
        {"distance_km": DISTANCE_KM, "duration_s": {**DURATION_S, "required": True}},
        {
            "parameters": {"baseline_g_per_pkm": _p("40", "g CO2e/pkm"), "project_g_per_pkm": _p("0", "g CO2e/pkm")},
            "validity_rules": {
                "min_distance_km": "0.5",
                "min_duration_s": "120",
                "max_speed_kmh": "25",
                "max_grams_per_action": 8000,
            },
            "daily_cap": {"unit": "distance_km", "limit": "30"},
            "evidence_shares": SHARES_WITH_SELF,
            "self_report_allowed": True,
            "evidence_description": "Bike-share operator orders.",
            "sources": [SRC_WUHAN, SRC_STANDARD],
        },
    ),
    (
        "walk_steps",
        "步行",
        "Walking steps",
        "per_step",
        {"steps": _num("integer", "100000")},
        {
            "parameters": {"g_per_step": _p("0.02", "g CO2e/step")},
            "validity_rules": {"max_steps": "50000", "max_grams_per_action": 1000},
            "daily_cap": {"unit": "steps", "limit": "15000"},
            "evidence_shares": SHARES_PARTNER,
            "self_report_allowed": False,
            "evidence_description": "Phone health data via the app (engagement, lowest trust; excluded from "
            "certified batches).",
            "sources": [SRC_WUHAN, {"title": "Ant Forest: about 200 g per 10,000 steps"}],
        },
    ),
    (
        "nev_charging",
        "新能源车充电",
        "NEV charging",
        "per_energy",
        {"energy_kwh": _num("decimal", "300")},
        {
            "parameters": {"g_per_kwh": _p("290", "g CO2e/kWh")},
            "validity_rules": {"min_energy_kwh": "1", "max_energy_kwh": "120", "max_grams_per_action": 35000},
            "daily_cap": {"unit": "actions", "limit": "2"},
            "evidence_shares": SHARES_PARTNER,
            "self_report_allowed": False,
            "evidence_description": "Charging operator records.",
            "sources": [_est("ICE 7 L/100 km × 2.07 kg/L vs 15 kWh/100 km × 0.6776 kg/kWh"), SRC_GRID],
        },
    ),
    (
        "recycling",
        "可回收物回收",
        "Recycling",
        "per_mass",
        {
            "mass_kg": _num("decimal", "500"),
            "material": {"type": "choice", "choices": MATERIALS, "required": True},
        },
        {
            "parameters": {
                "g_per_kg": _p(
                    {
                        "paper": "300",
                        "cardboard": "300",
                        "plastic": "1000",
                        "pet": "1500",
                        "aluminium": "8100",
                        "steel": "1000",
                        "glass": "500",
                        "textile": "3600",
                        "e_waste": "1500",
                    },
                    "g CO2e/kg",
                )
            },
            "validity_rules": {
                "min_mass_kg": "0.05",
                "max_mass_kg": "50",
                "duplicate_window_s": 300,
                "max_grams_per_action": 405000,
            },
            "daily_cap": {"unit": "mass_kg", "limit": "20"},
            "evidence_shares": SHARES_WITH_SELF,
            "self_report_allowed": True,
            "evidence_description": "Station/bin scale linked to a household QR code.",
            "sources": [
                {
                    "title": "UK DESNZ recycling savings (virgin minus closed loop): aluminium 8.1, steel 1.04, "
                    "glass 0.58, paper 0.30 kg/kg",
                    "url": SRC_DESNZ["url"],
                },
                {"title": "BIR: textiles reuse 3.6 kg CO2e/kg"},
                _est("plastic, PET, e-waste"),
            ],
        },
    ),
    (
        "kitchen_waste",
        "厨余垃圾分类",
        "Kitchen waste sorting",
        "per_mass",
        {"mass_kg": _num("decimal", "100")},
        {
            "parameters": {"g_per_kg": _p("100", "g CO2e/kg")},
            "validity_rules": {"min_mass_kg": "0.05", "max_mass_kg": "10", "max_grams_per_action": 1000},
            "daily_cap": {"unit": "mass_kg", "limit": "5"},
            "evidence_shares": SHARES_PARTNER,
            "self_report_allowed": False,
            "evidence_description": "Smart-bin scale.",
            "sources": [_est("incineration baseline")],
        },
    ),
    (
        "efficient_appliance",
        "节能家电",
        "Energy-efficient appliance",
        "appliance",
        {
            "annual_kwh_baseline": _num("decimal", "5000", digits=2),
            "annual_kwh_product": _num("decimal", "5000", digits=2),
            "serial": REQ_STRING,
            # Checked by the version's rules (`energy_label_grade`, `e_invoice_required`) with their own reasons.
            "energy_label_grade": _num("integer", "5", required=False, low="1"),
            "e_invoice_number": OPT_STRING,
        },
        {
            "parameters": {"grid_g_per_kwh": _p("677.6", "g CO2e/kWh"), "credited_years": _p("1", "years")},
            "validity_rules": {
                "energy_label_grade": 1,
                "e_invoice_required": True,
                "serial_unique_forever": True,
                "max_grams_per_action": 3400000,
            },
            "daily_cap": {"unit": "actions", "limit": "1"},
            "evidence_shares": SHARES_PARTNER,
            "self_report_allowed": False,
            "evidence_description": "Merchant receipt (e-invoice) and energy-label QR code.",
            "sources": [SRC_GRID],
        },
    ),
    (
        "paperless_bill",
        "无纸化账单",
        "Paperless bill",
        "per_item",
        {"count": _num("integer", "12")},
        {
            "parameters": {"g_per_item": _p("15", "g CO2e/item")},
            "validity_rules": {"one_per_biller_account_per_month": True, "max_grams_per_action": 180},
            "daily_cap": {"unit": "count", "limit": "5"},
            "evidence_shares": SHARES_PARTNER,
            "self_report_allowed": False,
            "evidence_description": "Biller switch-to-paperless record.",
            "sources": [_est("15 g per bill")],
        },
    ),
    (
        "reusable_cup",
        "自带杯",
        "Reusable cup",
        "per_item",
        {"count": _num("integer", "20")},
        {
            "parameters": {"g_per_item": _p("15", "g CO2e/item")},
            "validity_rules": {"max_grams_per_action": 300},
            "daily_cap": {"unit": "count", "limit": "3"},
            "evidence_shares": SHARES_PARTNER,
            "self_report_allowed": False,
            "evidence_description": "Merchant POS confirmation.",
            "sources": [_est("15 g per use")],
        },
    ),
    (
        "reusable_bag",
        "自带购物袋",
        "Reusable shopping bag",
        "per_item",
        {"count": _num("integer", "20")},
        {
            "parameters": {"g_per_item": _p("5", "g CO2e/item")},
            "validity_rules": {"max_grams_per_action": 100},
            "daily_cap": {"unit": "count", "limit": "3"},
            "evidence_shares": SHARES_PARTNER,
            "self_report_allowed": False,
            "evidence_description": "Merchant POS confirmation.",
            "sources": [SRC_WUHAN],
        },
    ),
]
