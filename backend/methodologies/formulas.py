"""The formula-type registry: the only code behind a methodology. Each type declares its parameters (name and
unit) and is a pure function from (parsed action data, parameter values) to exact Decimal baseline, project and
net emissions in g CO2e. A new methodology of an existing type is data only (a Methodology row and a version).

Every type is linear: net = quantity x per-unit factor (the factor may depend on the material). The impact
preview relies on that to aggregate in SQL (`sql_net`)."""

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from django.utils.translation import gettext as _


@dataclass(frozen=True)
class ParamSpec:
    name: str
    unit: str
    kind: str = "decimal"  # "decimal" | "material_map" | "decimal_or_material_map"
    integral: bool = False


@dataclass(frozen=True)
class Outcome:
    baseline: Decimal
    project: Decimal
    net: Decimal
    formula: str


@dataclass(frozen=True)
class FormulaTypeSpec:
    code: str
    params: tuple[ParamSpec, ...]
    data_keys: tuple[str, ...]  # numeric inputs the formula reads (others may be on the data for validity)
    formula: str
    compute: Callable[[dict, dict], Outcome]
    # sql_net(parameters, data_expr) -> (SQL expression of the net grams, its parameters), where data_expr is the
    # caller's SQL expression of the action's JSONB data (the impact preview passes "a.data").
    sql_net: Callable[[dict, str], tuple[str, list]]


def _num(data_expr: str, key: str) -> str:
    # JSONB ->> gives the number or decimal string as text; numeric keeps it exact (no float on the way).
    return f"({data_expr}->>'{key}')::numeric"


def _per_distance(data, p):
    distance = data["distance_km"]
    baseline = distance * p["baseline_g_per_pkm"]
    project = distance * p["project_g_per_pkm"]
    return Outcome(baseline, project, baseline - project, "distance_km × (baseline_g_per_pkm − project_g_per_pkm)")


def _per_trip(data, p):
    return Outcome(p["g_per_trip"], Decimal(0), p["g_per_trip"], "1 trip × g_per_trip")


def _per_step(data, p):
    net = data["steps"] * p["g_per_step"]
    return Outcome(net, Decimal(0), net, "steps × g_per_step")


def _mass_factor(data, p) -> Decimal:
    factor = p["g_per_kg"]
    if isinstance(factor, dict):
        from backend.methodologies.engine import ActionDataInvalid

        material = data.get("material")
        if material not in factor:
            raise ActionDataInvalid(
                "material", "unknown_material", _("No factor for material %(material)r.") % {"material": material}
            )
        return factor[material]
    return factor


def _per_mass(data, p):
    net = data["mass_kg"] * _mass_factor(data, p)
    formula = "mass_kg × g_per_kg[material]" if isinstance(p["g_per_kg"], dict) else "mass_kg × g_per_kg"
    return Outcome(net, Decimal(0), net, formula)


def _per_energy(data, p):
    net = data["energy_kwh"] * p["g_per_kwh"]
    return Outcome(net, Decimal(0), net, "energy_kwh × g_per_kwh")


def _per_item(data, p):
    net = data["count"] * p["g_per_item"]
    return Outcome(net, Decimal(0), net, "count × g_per_item")


def _appliance(data, p):
    factor = p["grid_g_per_kwh"] * p["credited_years"]
    baseline = data["annual_kwh_baseline"] * factor
    project = data["annual_kwh_product"] * factor
    return Outcome(
        baseline,
        project,
        baseline - project,
        "(annual_kwh_baseline − annual_kwh_product) × grid_g_per_kwh × credited_years",
    )


def _sql_mass(p, d):
    factor = p["g_per_kg"]
    if isinstance(factor, dict):
        cases = " ".join("WHEN %s THEN %s::numeric" for _ in factor)
        args: list = []
        for material, value in factor.items():
            args += [material, value]
        return f"{_num(d, 'mass_kg')} * (CASE {d}->>'material' {cases} ELSE 0 END)", args
    return f"{_num(d, 'mass_kg')} * %s::numeric", [factor]


FORMULA_TYPES: dict[str, FormulaTypeSpec] = {
    spec.code: spec
    for spec in [
        FormulaTypeSpec(
            "per_distance",
            (ParamSpec("baseline_g_per_pkm", "g CO2e/pkm"), ParamSpec("project_g_per_pkm", "g CO2e/pkm")),
            ("distance_km",),
            "distance_km × (baseline_g_per_pkm − project_g_per_pkm)",
            _per_distance,
            lambda p, d: (
                f"{_num(d, 'distance_km')} * (%s::numeric - %s::numeric)",
                [p["baseline_g_per_pkm"], p["project_g_per_pkm"]],
            ),
        ),
        FormulaTypeSpec(
            "per_trip",
            (ParamSpec("g_per_trip", "g CO2e/trip"),),
            (),
            "g_per_trip",
            _per_trip,
            lambda p, d: ("%s::numeric", [p["g_per_trip"]]),
        ),
        FormulaTypeSpec(
            "per_step",
            (ParamSpec("g_per_step", "g CO2e/step"),),
            ("steps",),
            "steps × g_per_step",
            _per_step,
            lambda p, d: (f"{_num(d, 'steps')} * %s::numeric", [p["g_per_step"]]),
        ),
        FormulaTypeSpec(
            "per_mass",
            (ParamSpec("g_per_kg", "g CO2e/kg", kind="decimal_or_material_map"),),
            ("mass_kg",),
            "mass_kg × g_per_kg[material]",
            _per_mass,
            _sql_mass,
        ),
        FormulaTypeSpec(
            "per_energy",
            (ParamSpec("g_per_kwh", "g CO2e/kWh"),),
            ("energy_kwh",),
            "energy_kwh × g_per_kwh",
            _per_energy,
            lambda p, d: (f"{_num(d, 'energy_kwh')} * %s::numeric", [p["g_per_kwh"]]),
        ),
        FormulaTypeSpec(
            "per_item",
            (ParamSpec("g_per_item", "g CO2e/item"),),
            ("count",),
            "count × g_per_item",
            _per_item,
            lambda p, d: (f"{_num(d, 'count')} * %s::numeric", [p["g_per_item"]]),
        ),
        FormulaTypeSpec(
            "appliance",
            (ParamSpec("grid_g_per_kwh", "g CO2e/kWh"), ParamSpec("credited_years", "years", integral=True)),
            ("annual_kwh_baseline", "annual_kwh_product"),
            "(annual_kwh_baseline − annual_kwh_product) × grid_g_per_kwh × credited_years",
            _appliance,
            lambda p, d: (
                f"({_num(d, 'annual_kwh_baseline')} - {_num(d, 'annual_kwh_product')}) * %s::numeric * %s::numeric",
                [p["grid_g_per_kwh"], p["credited_years"]],
            ),
        ),
    ]
}
