"""Example bodies of the methodologies API for the OpenAPI schema (drf-spectacular). A list example is one
item: spectacular wraps it in the cursor page."""

BUS_VERSION_EXAMPLE = {
    "number": 1,
    "status": "active",
    "parameters": {
        "baseline_g_per_pkm": {"value": "75", "unit": "g CO2e/pkm"},
        "project_g_per_pkm": {"value": "45", "unit": "g CO2e/pkm"},
    },
    "validity_rules": {"min_distance_km": "0.3", "max_distance_km": "60", "max_speed_kmh": "60"},
    "daily_cap": {"unit": "actions", "limit": "6"},
    "evidence_shares": {"partner": "1", "merchant_receipt": "1", "self_report": "0.5"},
    "evidence_description": "Transit operator tap records (琴岛通 card, QR, NFC).",
    "self_report_allowed": True,
    "sources": [
        {"title": "Shenzhen 低碳公共出行 carbon-inclusion methodology (EV bus 26.9 g/pkm, metro 46.7 g/pkm saved)"}
    ],
    "effective_from": "2026-01-01T00:00:00+08:00",
    "effective_to": None,
}
BUS_EXAMPLE = {
    "code": "bus_ride",
    "name_zh": "公交出行",
    "name_en": "Bus ride",
    "formula_type": "per_distance",
    "data_schema": {
        "distance_km": {"type": "decimal", "required": True},
        "duration_s": {"type": "decimal", "required": False},
    },
    "active_version": BUS_VERSION_EXAMPLE,
}
HISTORY_VERSION_EXAMPLE = {
    **BUS_VERSION_EXAMPLE,
    "notes": "Qingdao v1 catalogue.",
    "submitted_at": None,
    "decided_at": None,
    "decision_note": "",
    "activated_at": "2026-01-01T00:00:00+08:00",
    "retired_at": None,
    "transitions": [
        {
            "from_status": "",
            "to_status": "active",
            "actor_id": None,
            "actor_name": None,
            "note": "Seeded from the Qingdao v1 catalogue.",
            "at": "2026-01-01T00:00:00+08:00",
        }
    ],
}
ADMIN_VERSION_EXAMPLE = {
    "id": 1,
    "methodology": "bus_ride",
    **HISTORY_VERSION_EXAMPLE,
    "author_id": None,
    "decided_by_id": None,
}
POINTS_VERSION_EXAMPLE = {
    "id": 1,
    "number": 1,
    "status": "active",
    "points_per_gram": "1.000000",
    "lot_expiry_months": 12,
    "effective_from": "2026-01-01T00:00:00+08:00",
    "effective_to": None,
    "notes": "1 point per gram CO2e.",
    "author_id": None,
    "submitted_at": None,
    "decided_by_id": None,
    "decided_at": None,
    "decision_note": "",
    "activated_at": "2026-01-01T00:00:00+08:00",
    "retired_at": None,
    "transitions": HISTORY_VERSION_EXAMPLE["transitions"],
}
CALCULATION_EXAMPLE = {
    "grams": 300,
    "points": 300,
    "version": 1,
    "breakdown": {
        "methodology": "bus_ride",
        "version": 1,
        "formula_type": "per_distance",
        "formula": "distance_km × (baseline_g_per_pkm − project_g_per_pkm)",
        "inputs": {"distance_km": "10", "duration_s": "1500"},
        "parameters": {
            "baseline_g_per_pkm": {"value": "75", "unit": "g CO2e/pkm"},
            "project_g_per_pkm": {"value": "45", "unit": "g CO2e/pkm"},
        },
        "baseline_g": "750",
        "project_g": "450",
        "net_g": "300",
        "evidence_share": "1",
        "cap": {
            "unit": "actions",
            "daily_limit": "6",
            "quantity": "1",
            "credited_quantity": "1",
            "capped_quantity": "0",
        },
        "exact_g": "300",
        "rounding": "floor(300) = 300 g (rounded down once)",
        "grams": 300,
    },
}

PREVIEW_EXAMPLE = {
    "id": 7,
    "methodology": "bus_ride",
    "version": 2,
    "days": 30,
    "window_start": "2026-10-26T08:00:00Z",
    "window_end": "2026-11-25T08:00:00Z",
    "status": "done",
    "progress_done": 2,
    "progress_total": 2,
    "result": {
        "totals": {"actions": 2, "current_grams": 600, "preview_grams": 700, "delta_grams": 100},
        "by_district": [
            {
                "district": "370202",
                "actions": 2,
                "current_grams": 600,
                "preview_grams": 700,
                "delta_grams": 100,
            }
        ],
        "by_day": [
            {
                "day": "2026-11-20",
                "actions": 2,
                "current_grams": 600,
                "preview_grams": 700,
                "delta_grams": 100,
            }
        ],
        "residents_affected": 1,
        "largest_changes": [
            {
                "resident_id": 5,
                "district": "370202",
                "current_grams": 600,
                "preview_grams": 700,
                "delta_grams": 100,
            }
        ],
        "assumptions": [
            "Daily caps as they were: each action is priced on the quantity that fit under its cap when credited."
        ],
    },
    "error": "",
    "created_at": "2026-11-25T08:00:00Z",
    "started_at": "2026-11-25T08:00:01Z",
    "finished_at": "2026-11-25T08:00:02Z",
}
