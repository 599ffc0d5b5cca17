"""The calculation engine: parse action data, check a version's validity rules, compute grams CO2e.

Pure functions of (action data, version): the same inputs and version always give the same grams. All maths
is Decimal (numbers are parsed straight from JSON numbers or decimal strings, never through float) and the
result is rounded down exactly once, in `calculate`. The ingestion pipeline and the calculate endpoint call
these; history-dependent rules (duplicates, serial reuse, one bill per month) are the pipeline's, exposed as
data in `validity_rules`."""

import functools
import re
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal, InvalidOperation, localcontext
from typing import TYPE_CHECKING

from django.utils.translation import gettext as _

from backend.methodologies.formulas import FORMULA_TYPES

if TYPE_CHECKING:
    from backend.methodologies.models import Methodology, MethodologyVersion, PointsPolicyVersion

_DECIMAL_RE = re.compile(r"^-?([0-9]+(\.[0-9]*)?|\.[0-9]+)$")  # ASCII digits only: no full-width ０-９
# Enough digits that multiplying factors, shares and cap fractions never rounds before the one floor.
_PRECISION = 60
MAX_STRING_LENGTH = 128

EVIDENCE_LEVELS = ("partner", "merchant_receipt", "self_report")
CAP_UNITS = ("actions", "distance_km", "steps", "mass_kg", "energy_kwh", "count")
DATA_TYPES = ("decimal", "integer", "string", "choice")

# Validity rules a version may carry, and the type of their value. Rules the engine checks are marked; the
# others need history and are enforced by the ingestion pipeline from this data.
VALIDITY_RULE_TYPES = {
    "min_distance_km": "decimal",
    "max_distance_km": "decimal",
    "min_duration_s": "decimal",
    "max_speed_kmh": "decimal",
    "distinct_stations": "bool",
    "min_steps": "decimal",
    "max_steps": "decimal",
    "min_mass_kg": "decimal",
    "max_mass_kg": "decimal",
    "min_energy_kwh": "decimal",
    "max_energy_kwh": "decimal",
    "min_count": "decimal",
    "max_count": "decimal",
    # Pipeline (history-dependent):
    "duplicate_window_s": "integer",  # same household + material within this many seconds = duplicate
    "serial_unique_forever": "bool",  # an appliance serial earns once, ever
    "one_per_biller_account_per_month": "bool",
    "energy_label_grade": "integer",  # required China energy label grade (1 = best)
    "e_invoice_required": "bool",
    # Engine: the most one action may ever earn under this version (g CO2e, before evidence share and caps).
    "max_grams_per_action": "integer",
}
# The rules the pipeline enforces from history (backend/actions/pipeline/rules.py, one function each); every
# other rule is checked by `check_validity`. A rule in neither set is refused at validation.
HISTORY_RULES = ("duplicate_window_s", "serial_unique_forever", "one_per_biller_account_per_month")
# Bounds of any numeric data field whose schema names none: no field is ever unbounded.
DEFAULT_FIELD_MAX = Decimal(10) ** 9
DEFAULT_FIELD_DIGITS = 6


OUT_OF_RANGE = "out_of_range"
IMPLAUSIBLE = "implausible_amount"


class ActionDataInvalid(Exception):
    """The action's data does not fit the methodology: `field` is the offending key, `code` the reason."""

    def __init__(self, field: str, code: str, detail: str = ""):
        self.field = field
        self.code = code
        self.detail = detail or f"{field}: {code}"
        super().__init__(self.detail)


class VersionContentInvalid(Exception):
    """A version's parameters / rules / caps / shares / sources break the formula type's schema.
    `errors` is a list of (attr, code, detail), attr a dotted path like "parameters.baseline_g_per_pkm"."""

    def __init__(self, errors: list[tuple[str, str, str]]):
        self.errors = errors
        super().__init__("; ".join(f"{a}: {c}" for a, c, _detail in errors))


MAX_DECIMAL_EXPONENT = 15
MAX_DECIMAL_DIGITS = 30


def parse_decimal(value) -> Decimal:
    """A JSON number or decimal string as an exact Decimal. Raises ValueError otherwise.

    One rule for every way a number arrives (a JSON number decoded as float or Decimal, an int, a string):
    its plain decimal text must be digits with an optional point. Exponent notation (`1e300`, `1e-28`) is
    refused, at submission and in the pipeline alike: nobody types a trip in scientific notation, and an
    exponent is the cheapest way to smuggle a number no bound was written for."""
    if isinstance(value, bool):
        raise ValueError("boolean")
    if isinstance(value, Decimal):
        text = str(value)  # Decimal("1E+15") prints with its exponent, Decimal("100") without
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        # Only reached when a caller decoded JSON without parse_float=Decimal; repr() is the shortest string
        # that round-trips, i.e. the digits that were written in the JSON ("1.15"), not the binary value.
        text = repr(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise ValueError("not a number")
    if len(text) > MAX_STRING_LENGTH or not _DECIMAL_RE.match(text):
        raise ValueError("not a plain decimal number")
    result = Decimal(text)
    if not result.is_finite():
        raise ValueError("not finite")
    # Maths on a huge or tiny Decimal overflows the context or turns into a 5,000-digit integer: no action
    # data is anywhere near 10^15, so refuse them here as "not a number".
    if result and not (-MAX_DECIMAL_EXPONENT <= result.adjusted() <= MAX_DECIMAL_EXPONENT):
        raise ValueError("out of range")
    if len(result.as_tuple().digits) > MAX_DECIMAL_DIGITS:
        raise ValueError("too many digits")
    return result


def _field_bounds(key: str, spec: dict) -> tuple[Decimal, Decimal, int]:
    args = (spec.get("min", "0"), spec.get("max"), spec.get("type"), spec.get("digits", DEFAULT_FIELD_DIGITS))
    try:
        hash(args)
    except TypeError:  # a malformed schema (a list where a number belongs): parsed, and refused, uncached
        return _bounds.__wrapped__(*args)
    return _bounds(*args)


@functools.lru_cache(maxsize=1024)
def _bounds(low, high, kind, digits) -> tuple[Decimal, Decimal, int]:
    """A field's parsed bounds, cached by their JSON values (parsed once, not for each of a batch's actions)."""
    return (
        parse_decimal(low),
        parse_decimal(high) if high is not None else DEFAULT_FIELD_MAX,
        0 if kind == "integer" else int(digits),
    )


@functools.lru_cache(maxsize=1024)
def _rule_value(value) -> Decimal:
    return parse_decimal(value)


# --- action data -------------------------------------------------------------------------------------------


def parse_action_data(methodology: "Methodology", data: dict) -> dict:
    """Validate `data` against the methodology's data schema and return it normalised: numbers as Decimal,
    strings stripped. Keys the schema does not know are dropped. Raises ActionDataInvalid."""
    if not isinstance(data, dict):
        raise ActionDataInvalid("data", "invalid", _("Action data must be an object."))
    parsed: dict = {}
    for key, spec in methodology.data_schema.items():
        value = data.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            if spec.get("required", True):
                raise ActionDataInvalid(key, "required", _("%(key)s is required.") % {"key": key})
            continue
        kind = spec.get("type", "decimal")
        if kind in ("decimal", "integer"):
            try:
                number = parse_decimal(value)
            except (ValueError, InvalidOperation):
                raise ActionDataInvalid(
                    key, "invalid_number", _("%(key)s must be a number or a decimal string.") % {"key": key}
                )
            if number < 0:
                raise ActionDataInvalid(key, "negative", _("%(key)s must not be negative.") % {"key": key})
            if kind == "integer" and number != number.to_integral_value():
                raise ActionDataInvalid(key, "invalid_number", _("%(key)s must be a whole number.") % {"key": key})
            low, high, digits = _field_bounds(key, spec)
            if -number.normalize().as_tuple().exponent > digits:
                raise ActionDataInvalid(
                    key,
                    "too_many_digits",
                    _("%(key)s has at most %(digits)s decimal places.") % {"key": key, "digits": digits},
                )
            if not low <= number <= high:
                # "out_of_range": the pipeline and the calculator report it as `implausible_amount`.
                raise ActionDataInvalid(
                    key,
                    OUT_OF_RANGE,
                    _("%(key)s must be between %(low)s and %(high)s.") % {"key": key, "low": low, "high": high},
                )
            parsed[key] = number
        else:
            if not isinstance(value, str) or len(value) > MAX_STRING_LENGTH:
                raise ActionDataInvalid(
                    key, "invalid_string", _("%(key)s must be a string (at most 128 characters).") % {"key": key}
                )
            text = value.strip()
            if kind == "choice":
                text = text.lower()
                if text not in spec.get("choices", []):
                    code = "unknown_material" if key == "material" else "invalid_choice"
                    raise ActionDataInvalid(
                        key,
                        code,
                        _("%(key)s must be one of %(choices)s.")
                        % {"key": key, "choices": ", ".join(spec.get("choices", []))},
                    )
            parsed[key] = text
    return parsed


def _ensure_parsed(version: "MethodologyVersion", data: dict) -> dict:
    spec = FORMULA_TYPES[version.methodology.formula_type]
    if all(isinstance(data.get(key), Decimal) for key in spec.data_keys):
        return data
    return parse_action_data(version.methodology, data)


def _rule(version: "MethodologyVersion", name: str) -> Decimal | None:
    value = version.validity_rules.get(name)
    if value is None or isinstance(value, bool):
        return None
    # Cached by the JSON value (str, int or float: hashable); anything else is parsed (and refused) as given.
    return _rule_value(value) if isinstance(value, str | int | float) else parse_decimal(value)


def _out_of_range(version, data: dict, key: str, rule_suffix: str) -> bool:
    value = data.get(key)
    if value is None:
        return False
    low, high = _rule(version, f"min_{rule_suffix}"), _rule(version, f"max_{rule_suffix}")
    return (low is not None and value < low) or (high is not None and value > high)


def check_validity(version: "MethodologyVersion", data: dict) -> str | None:
    """The version's validity and plausibility rules on parsed data: None when valid, else a reason code.
    Rules needing history (duplicates, serial reuse, one bill per month) are left to the pipeline."""
    data = _ensure_parsed(version, data)
    rules = version.validity_rules
    if _out_of_range(version, data, "distance_km", "distance_km"):
        return "distance_out_of_range"
    duration = data.get("duration_s")
    min_duration = _rule(version, "min_duration_s")
    if min_duration is not None:
        if duration is None:
            return "duration_missing"
        if duration < min_duration:
            return "duration_too_short"
    max_speed = _rule(version, "max_speed_kmh")
    if max_speed is not None and duration is not None and "distance_km" in data:
        # Average speed km/h = km / (s / 3600); a zero duration is no plausible ride at all.
        if duration == 0 or data["distance_km"] * 3600 > max_speed * duration:
            return "speed_implausible"
    if rules.get("distinct_stations") and data.get("entry_station") is not None:
        if data["entry_station"].casefold() == (data.get("exit_station") or "").casefold():
            return "same_station"
    if _out_of_range(version, data, "steps", "steps"):
        return "steps_out_of_range"
    if _out_of_range(version, data, "mass_kg", "mass_kg"):
        return "mass_out_of_range"
    if _out_of_range(version, data, "energy_kwh", "energy_kwh"):
        return "energy_out_of_range"
    if _out_of_range(version, data, "count", "count"):
        return "count_out_of_range"
    if "annual_kwh_baseline" in data and data.get("annual_kwh_product", Decimal(0)) >= data["annual_kwh_baseline"]:
        return "no_reduction"
    grade = _rule(version, "energy_label_grade")
    if grade is not None:
        # China energy label: grade 1 is the most efficient; the rule names the worst grade still credited.
        if data.get("energy_label_grade") is None:
            return "energy_label_missing"
        if data["energy_label_grade"] > grade:
            return "energy_label_insufficient"
    if rules.get("e_invoice_required") and not data.get("e_invoice_number"):
        return "e_invoice_missing"
    if _above_ceiling(version, net_grams(version, data)):
        return IMPLAUSIBLE
    return None


def net_grams(version: "MethodologyVersion", data: dict) -> Decimal:
    """The exact net reduction of one action before evidence share and caps."""
    spec = FORMULA_TYPES[version.methodology.formula_type]
    return spec.compute(_ensure_parsed(version, data), parameter_values(version)).net


def ceiling(version: "MethodologyVersion") -> Decimal | None:
    """`max_grams_per_action` of the version (None only for a draft that has not declared it yet)."""
    return _rule(version, "max_grams_per_action")


def _above_ceiling(version, net: Decimal) -> bool:
    limit = ceiling(version)
    return limit is not None and net > limit


def cap_quantity(version: "MethodologyVersion", data: dict) -> Decimal:
    """How much of the version's daily cap this action consumes, in the cap's unit (1 for "actions" or when the
    version has no cap)."""
    cap = version.daily_cap
    if not cap or cap.get("unit") == "actions":
        return Decimal(1)
    unit = cap["unit"]
    data = _ensure_parsed(version, data)
    if data.get(unit) is None:
        raise ActionDataInvalid(unit, "required", _("%(key)s is required (the daily cap counts it).") % {"key": unit})
    return data[unit]


# --- parameters -------------------------------------------------------------------------------------------


def parameter_values(version: "MethodologyVersion") -> dict:
    """The version's parameters as Decimals (material maps as {material: Decimal}). Cached on the instance:
    versions are immutable once submitted, and drafts are re-read after every edit."""
    cache_key = (id(version.parameters), repr(version.parameters))
    cached = getattr(version, "_parameter_cache", None)
    if cached and cached[0] == cache_key:
        return cached[1]
    values: dict = {}
    for name, entry in version.parameters.items():
        raw = entry["value"]
        values[name] = {m: parse_decimal(v) for m, v in raw.items()} if isinstance(raw, dict) else parse_decimal(raw)
    version._parameter_cache = (cache_key, values)
    return values


def validate_version_content(
    *,
    formula_type: str,
    data_schema: dict,
    parameters,
    validity_rules,
    daily_cap,
    evidence_shares,
    self_report_allowed: bool,
    sources,
    require_sources: bool = False,
) -> None:
    """Check a version's content against its formula type. Raises VersionContentInvalid listing every problem
    with a stable code: unknown_parameter, missing_parameter, invalid_number, negative_factor, unit_missing,
    unit_mismatch, material_unnamed, material_missing, not_integer, project_exceeds_baseline, unknown_validity_rule,
    ceiling_required,
    invalid_rule, invalid_cap_unit, invalid_cap_limit, unknown_evidence_level, invalid_share,
    self_report_share_missing, sources_required, invalid_source."""
    errors: list[tuple[str, str, str]] = []
    spec = FORMULA_TYPES[formula_type]
    if not isinstance(parameters, dict):
        errors.append(("parameters", "invalid", _("Parameters must be an object.")))
        parameters = {}
    known = {p.name: p for p in spec.params}
    for name in parameters:
        if name not in known:
            errors.append(
                (
                    f"parameters.{name}",
                    "unknown_parameter",
                    _("%(formula)s has no parameter %(name)r.") % {"formula": formula_type, "name": name},
                )
            )
    materials = data_schema.get("material", {}).get("choices", []) if isinstance(data_schema, dict) else []
    values: dict = {}
    for name, param in known.items():
        attr = f"parameters.{name}"
        entry = parameters.get(name)
        if entry is None:
            errors.append(
                (attr, "missing_parameter", _("%(name)s is required (%(unit)s).") % {"name": name, "unit": param.unit})
            )
            continue
        if not isinstance(entry, dict) or "value" not in entry:
            errors.append(
                (
                    attr,
                    "invalid",
                    _('%(name)s must be {"value": ..., "unit": "%(unit)s"}.') % {"name": name, "unit": param.unit},
                )
            )
            continue
        extra = set(entry) - {"value", "unit", "note"}
        if extra:
            errors.append(
                (
                    attr,
                    "unknown_parameter",
                    _("Unexpected keys %(keys)s in %(name)s.") % {"keys": sorted(extra), "name": name},
                )
            )
        unit = entry.get("unit")
        if not unit:
            errors.append(
                (
                    f"{attr}.unit",
                    "unit_missing",
                    _("State the unit of %(name)s: %(unit)s.") % {"name": name, "unit": param.unit},
                )
            )
        elif unit != param.unit:
            errors.append(
                (
                    f"{attr}.unit",
                    "unit_mismatch",
                    _("%(name)s is in %(unit)s, not %(given)s.") % {"name": name, "unit": param.unit, "given": unit},
                )
            )
        raw = entry["value"]
        if isinstance(raw, dict):
            if param.kind == "decimal":
                errors.append((f"{attr}.value", "invalid_number", _("%(name)s is a single number.") % {"name": name}))
                continue
            if not raw:
                errors.append((f"{attr}.value", "material_unnamed", _("Name at least one material.")))
            parsed = {}
            for material, value in raw.items():
                if not isinstance(material, str) or not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", material):
                    errors.append(
                        (
                            f"{attr}.value",
                            "material_unnamed",
                            _("Invalid material name %(material)r.") % {"material": material},
                        )
                    )
                    continue
                parsed[material] = _check_factor(errors, f"{attr}.value.{material}", value, param)
            for material in materials:
                if material not in raw:
                    errors.append(
                        (
                            f"{attr}.value.{material}",
                            "material_missing",
                            _("No factor for %(material)s.") % {"material": material},
                        )
                    )
            values[name] = parsed
        else:
            if param.kind == "material_map" or (param.kind == "decimal_or_material_map" and materials):
                errors.append(
                    (f"{attr}.value", "material_missing", _("%(name)s needs a factor per material.") % {"name": name})
                )
                continue
            values[name] = _check_factor(errors, f"{attr}.value", raw, param)
    base, proj = values.get("baseline_g_per_pkm"), values.get("project_g_per_pkm")
    if isinstance(base, Decimal) and isinstance(proj, Decimal) and proj > base:
        errors.append(
            ("parameters.project_g_per_pkm", "project_exceeds_baseline", "Project emissions exceed the baseline.")
        )

    _validate_rules(errors, validity_rules)
    if require_sources and isinstance(validity_rules, dict) and "max_grams_per_action" not in validity_rules:
        errors.append(
            (
                "validity_rules.max_grams_per_action",
                "ceiling_required",
                _("Declare the most one action may earn (g CO2e)."),
            )
        )
    _validate_cap(errors, daily_cap, data_schema)
    _validate_shares(errors, evidence_shares, self_report_allowed)
    _validate_sources(errors, sources, require_sources)
    if errors:
        raise VersionContentInvalid(errors)


def _check_factor(errors, attr, value, param) -> Decimal | None:
    try:
        number = parse_decimal(value)
    except (ValueError, InvalidOperation):
        errors.append((attr, "invalid_number", _("Must be a decimal string or number.")))
        return None
    if number < 0:
        errors.append((attr, "negative_factor", _("Factors must not be negative.")))
    if param.integral and number != number.to_integral_value():
        errors.append((attr, "not_integer", _("Must be a whole number.")))
    return number


def _validate_rules(errors, rules) -> None:
    if not isinstance(rules, dict):
        errors.append(("validity_rules", "invalid", _("Validity rules must be an object.")))
        return
    for name, value in rules.items():
        attr = f"validity_rules.{name}"
        kind = VALIDITY_RULE_TYPES.get(name)
        if kind is None:
            errors.append((attr, "unknown_validity_rule", _("Unknown validity rule %(name)r.") % {"name": name}))
        elif kind == "bool":
            if not isinstance(value, bool):
                errors.append((attr, "invalid_rule", _("Must be true or false.")))
        else:
            try:
                number = parse_decimal(value)
            except (ValueError, InvalidOperation):
                errors.append((attr, "invalid_rule", _("Must be a number.")))
                continue
            if number < 0 or (kind == "integer" and number != number.to_integral_value()):
                errors.append((attr, "invalid_rule", _("Must be a non-negative number.")))
    for low, high in [(n, "max_" + n[4:]) for n in rules if n.startswith("min_")]:
        try:
            if high in rules and parse_decimal(rules[low]) > parse_decimal(rules[high]):
                errors.append(
                    (
                        f"validity_rules.{low}",
                        "invalid_rule",
                        _("%(low)s is above %(high)s.") % {"low": low, "high": high},
                    )
                )
        except (ValueError, InvalidOperation):
            pass


def _validate_cap(errors, cap, data_schema) -> None:
    if cap is None:
        return
    if not isinstance(cap, dict) or set(cap) != {"unit", "limit"}:
        errors.append(("daily_cap", "invalid", _('Daily cap is {"unit": ..., "limit": ...} or null.')))
        return
    numeric_keys = {k for k, s in data_schema.items() if s.get("type", "decimal") in ("decimal", "integer")}
    if cap["unit"] not in CAP_UNITS or (cap["unit"] != "actions" and cap["unit"] not in numeric_keys):
        errors.append(("daily_cap.unit", "invalid_cap_unit", _("Cap unit must be actions or a numeric data key.")))
    try:
        if parse_decimal(cap["limit"]) <= 0:
            raise ValueError
    except (ValueError, InvalidOperation):
        errors.append(("daily_cap.limit", "invalid_cap_limit", _("Cap limit must be a positive number.")))


def _validate_shares(errors, shares, self_report_allowed) -> None:
    if not isinstance(shares, dict) or not shares:
        errors.append(("evidence_shares", "invalid", _("Give the share of at least one evidence level.")))
        return
    for level, value in shares.items():
        attr = f"evidence_shares.{level}"
        if level not in EVIDENCE_LEVELS:
            errors.append(
                (
                    attr,
                    "unknown_evidence_level",
                    _("Evidence levels: %(levels)s.") % {"levels": ", ".join(EVIDENCE_LEVELS)},
                )
            )
            continue
        try:
            share = parse_decimal(value)
        except (ValueError, InvalidOperation):
            errors.append((attr, "invalid_share", _("Must be a decimal between 0 and 1.")))
            continue
        if not Decimal(0) <= share <= Decimal(1):
            errors.append((attr, "invalid_share", _("Must be a decimal between 0 and 1.")))
    if self_report_allowed and "self_report" not in shares:
        errors.append(("evidence_shares.self_report", "self_report_share_missing", _("Self-report needs a share.")))


def _validate_sources(errors, sources, required: bool) -> None:
    if not isinstance(sources, list):
        errors.append(("sources", "invalid", _("Sources must be a list.")))
        return
    if required and not sources:
        errors.append(("sources", "sources_required", _("Cite at least one source.")))
    for index, source in enumerate(sources):
        if (
            not isinstance(source, dict)
            or not isinstance(source.get("title"), str)
            or not source["title"].strip()
            or set(source) - {"title", "url", "note"}
        ):
            errors.append((f"sources.{index}", "invalid_source", _('A source is {"title", "url"?, "note"?}.')))


# --- calculation ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CalculationResult:
    grams: int  # rounded down exactly once
    breakdown: dict = field(hash=False)
    quantity: Decimal
    credited_quantity: Decimal
    capped_quantity: Decimal


def _floor(value: Decimal) -> int:
    """The one rounding of the engine: toward minus infinity, to whole grams."""
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


def calculate(
    version: "MethodologyVersion",
    data: dict,
    *,
    evidence_share: Decimal = Decimal(1),
    credited_quantity: Decimal | None = None,
    params: dict | None = None,
    lean: bool = False,
) -> CalculationResult:
    """grams = floor(exact_net x evidence_share x credited_quantity / quantity), one floor, never negative.
    `credited_quantity` is what remains under the resident's daily cap (None = the whole action).
    The pipeline's batch path passes the version's `params` (`parameter_values`, once per version) and asks for a
    `lean` breakdown: only what is stored with an action (LEAN_BREAKDOWN_KEYS); the same inputs and version give
    the full one again when a person asks for it."""
    methodology = version.methodology
    spec = FORMULA_TYPES[methodology.formula_type]
    data = _ensure_parsed(version, data)
    if params is None:
        params = parameter_values(version)
    outcome = spec.compute(data, params)
    if _above_ceiling(version, outcome.net):
        raise ActionDataInvalid(
            "data",
            IMPLAUSIBLE,
            _("More than this version's ceiling of %(max)s g for one action.") % {"max": ceiling(version)},
        )
    quantity = cap_quantity(version, data)
    credited = quantity if credited_quantity is None else Decimal(credited_quantity)
    if not Decimal(0) <= credited <= quantity:
        raise ValueError(f"credited_quantity {credited} outside [0, {quantity}]")
    share = Decimal(evidence_share)
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        exact = outcome.net * share
        if quantity != credited:
            exact = exact * credited / quantity
    grams = max(0, _floor(exact))
    cap = version.daily_cap
    cap_breakdown = {
        "unit": cap["unit"] if cap else None,
        "daily_limit": cap["limit"] if cap else None,
        "quantity": str(quantity),
        "credited_quantity": str(credited),
        "capped_quantity": str(quantity - credited),
    }
    # What an action stores (the lean breakdown); the full one puts the version's inputs and parameters first.
    stored = {
        "baseline_g": str(outcome.baseline),
        "project_g": str(outcome.project),
        "net_g": str(outcome.net),
        "evidence_share": str(share),
        "cap": cap_breakdown,
        "exact_g": str(exact),
        "rounding": f"floor({exact}) = {grams} g (rounded down once)",
        "grams": grams,
    }
    if lean:
        return CalculationResult(grams, stored, quantity, credited, quantity - credited)
    breakdown = {
        "methodology": methodology.code,
        "version": version.number,
        "formula_type": methodology.formula_type,
        "formula": outcome.formula,
        "inputs": {k: str(v) for k, v in data.items()},
        "parameters": {
            name: {
                "value": {m: str(v) for m, v in value.items()} if isinstance(value, dict) else str(value),
                "unit": version.parameters[name].get("unit"),
            }
            for name, value in params.items()
        },
        **stored,
    }
    return CalculationResult(
        grams=grams,
        breakdown=breakdown,
        quantity=quantity,
        credited_quantity=credited,
        capped_quantity=quantity - credited,
    )


# What a lean breakdown holds (the keys an action stores: actions/pipeline/write.py).
LEAN_BREAKDOWN_KEYS = ("baseline_g", "project_g", "net_g", "evidence_share", "cap", "exact_g", "rounding", "grams")


def points_for_grams(grams: int, policy: "PointsPolicyVersion") -> int:
    """floor(grams x points_per_gram): the one rounding from carbon to points."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return _floor(Decimal(grams) * Decimal(policy.points_per_gram))
