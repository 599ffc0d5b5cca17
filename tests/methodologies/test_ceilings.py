"""Issue 11, part 3: every methodology has a ceiling, every declared validity rule is enforced, and whatever
the engine accepts stays within bounds (Hypothesis, over every seeded methodology)."""

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.actions.pipeline.rules import HISTORY_RULES
from backend.methodologies import engine
from backend.methodologies.catalogue import CATALOGUE
from backend.methodologies.models import MethodologyVersion

pytestmark = pytest.mark.django_db

NUMBERS = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.decimals(allow_nan=True, allow_infinity=True, places=None),
    st.decimals(min_value=0, max_value=10**6, places=3).map(str),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["1e300", "1e-28", "1E+2", "０１２", "12", "", " 7 ", "-0", "NaN", "Infinity", "0x10"]),
)
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    NUMBERS,
    st.text(max_size=40),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def active_versions():
    return list(MethodologyVersion.objects.select_related("methodology").filter(status="active"))


@pytest.mark.parametrize("code", [entry[0] for entry in CATALOGUE])
def test_whatever_the_engine_accepts_stays_under_the_ceiling(reference_data, code):
    version = MethodologyVersion.objects.select_related("methodology").get(methodology__code=code, status="active")
    methodology = version.methodology
    ceiling = engine.ceiling(version)
    assert ceiling is not None and ceiling > 0
    choices = {k: s.get("choices", []) for k, s in methodology.data_schema.items() if s.get("type") == "choice"}
    fields = {
        key: st.one_of(VALUES, st.sampled_from(choices[key])) if key in choices else VALUES
        for key in methodology.data_schema
    }

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.fixed_dictionaries(fields))
    def check(data):
        try:
            parsed = engine.parse_action_data(methodology, data)
            engine.check_validity(version, parsed)
            result = engine.calculate(version, parsed, evidence_share=Decimal(1))
        except engine.ActionDataInvalid:
            return
        assert 0 <= result.grams <= ceiling

    check()


def test_every_seeded_version_declares_a_ceiling_and_only_known_rules(reference_data):
    for version in active_versions():
        rules = version.validity_rules
        assert "max_grams_per_action" in rules, version
        assert set(rules) <= set(engine.VALIDITY_RULE_TYPES), version


def test_every_known_rule_is_enforced_somewhere():
    """A rule is checked by the engine (check_validity reads it) or by one pipeline function per key."""
    import inspect

    source = inspect.getsource(engine.check_validity) + inspect.getsource(engine._above_ceiling)
    source += inspect.getsource(engine.ceiling)
    for rule in engine.VALIDITY_RULE_TYPES:
        enforced_by_engine = f'"{rule}"' in source or (
            rule.startswith(("min_", "max_")) and f'"{rule.split("_", 1)[1]}"' in source
        )
        assert enforced_by_engine or rule in HISTORY_RULES, rule
    assert set(HISTORY_RULES) == set(engine.HISTORY_RULES)


def test_unknown_rule_is_refused_at_validation():
    errors = []
    engine._validate_rules(errors, {"teleport": True, "max_grams_per_action": 10})
    assert [(a, c) for a, c, _d in errors] == [("validity_rules.teleport", "unknown_validity_rule")]


def test_a_version_without_ceiling_cannot_be_submitted(reference_data):
    version = MethodologyVersion.objects.select_related("methodology").get(
        methodology__code="bus_ride", status="active"
    )
    rules = {k: v for k, v in version.validity_rules.items() if k != "max_grams_per_action"}
    with pytest.raises(engine.VersionContentInvalid) as error:
        engine.validate_version_content(
            formula_type=version.methodology.formula_type,
            data_schema=version.methodology.data_schema,
            parameters=version.parameters,
            validity_rules=rules,
            daily_cap=version.daily_cap,
            evidence_shares=version.evidence_shares,
            self_report_allowed=version.self_report_allowed,
            sources=version.sources,
            require_sources=True,
        )
    assert [(a, c) for a, c, _d in error.value.errors] == [("validity_rules.max_grams_per_action", "ceiling_required")]


def test_a_new_version_with_a_huge_factor_is_held_by_the_ceiling(reference_data):
    """The ceiling is what stops a version whose parameters went wrong (a factor typed in mg)."""
    version = MethodologyVersion.objects.select_related("methodology").get(
        methodology__code="nev_charging", status="active"
    )
    version.parameters = {"g_per_kwh": {"value": "290000", "unit": "g CO2e/kWh"}}
    parsed = engine.parse_action_data(version.methodology, {"energy_kwh": "30"})
    assert engine.check_validity(version, parsed) == "implausible_amount"
    with pytest.raises(engine.ActionDataInvalid) as error:
        engine.calculate(version, parsed)
    assert error.value.code == "implausible_amount"


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("12.5", True),
        (12, True),
        (Decimal("12.5"), True),
        (12.5, True),
        ("1e3", False),
        (1e300, False),
        (Decimal("1E+2"), False),
        ("1E-28", False),
        ("１２", False),
        (float("inf"), False),
        ("NaN", False),
    ],
)
def test_one_number_rule_everywhere(value, ok):
    if ok:
        assert engine.parse_decimal(value) > 0
    else:
        with pytest.raises(ValueError):
            engine.parse_decimal(value)


@pytest.mark.django_db(transaction=True)
def test_migration_gives_existing_versions_their_ceiling_and_nothing_else(reference_data):
    """Versions submitted before issue 11 have no ceiling and are immutable: migration 0003, and only it,
    adds the key (the immutability trigger stays on for everybody else)."""
    import importlib
    from types import SimpleNamespace

    from django.apps import apps
    from django.db import DatabaseError, connection, transaction

    migration = importlib.import_module("backend.methodologies.migrations.0003_versions_declare_ceiling")
    active = MethodologyVersion.objects.select_related("methodology").get(methodology__code="bus_ride", status="active")
    old_rules = {k: v for k, v in active.validity_rules.items() if k != "max_grams_per_action"}
    draft = MethodologyVersion.objects.create(
        methodology=active.methodology,
        number=99,
        status="draft",
        parameters=active.parameters,
        validity_rules=old_rules,
        daily_cap=active.daily_cap,
        evidence_shares=active.evidence_shares,
        sources=active.sources,
        effective_from=active.effective_from,
    )
    MethodologyVersion.objects.filter(pk=draft.pk).update(status="retired")  # submitted long ago, no ceiling
    def execute(sql, params=None):
        with connection.cursor() as cursor:
            cursor.execute(sql)

    with transaction.atomic():  # what `migrate` does: the whole migration in one transaction
        migration.forwards(apps, SimpleNamespace(connection=connection, execute=execute))
    draft.refresh_from_db()
    assert draft.validity_rules == {**old_rules, "max_grams_per_action": 2000}
    assert "migration methodologies 0003" in draft.notes
    active.refresh_from_db()
    assert active.validity_rules["max_grams_per_action"] == 2000  # untouched: it had one
    if connection.vendor == "postgresql":
        with pytest.raises(DatabaseError), transaction.atomic():
            MethodologyVersion.objects.filter(pk=draft.pk).update(validity_rules={})
