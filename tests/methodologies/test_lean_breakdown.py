"""The pipeline's lean calculation (parameters parsed once per version, only the stored breakdown keys) gives
exactly what the full calculation gives, reduced to what an action stores: over every seeded methodology."""

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.actions.pipeline.write import STORED_BREAKDOWN_KEYS, compact_breakdown
from backend.methodologies import engine
from backend.methodologies.catalogue import CATALOGUE
from backend.methodologies.models import MethodologyVersion

pytestmark = pytest.mark.django_db


def test_lean_keys_are_the_stored_keys():
    assert engine.LEAN_BREAKDOWN_KEYS == STORED_BREAKDOWN_KEYS


@pytest.mark.parametrize("code", [entry[0] for entry in CATALOGUE])
def test_lean_equals_the_compacted_full_calculation(reference_data, code):
    version = MethodologyVersion.objects.select_related("methodology").get(methodology__code=code, status="active")
    methodology = version.methodology
    params = engine.parameter_values(version)
    choices = {k: s.get("choices", []) for k, s in methodology.data_schema.items() if s.get("type") == "choice"}
    numbers = st.decimals(min_value=0, max_value=10**5, places=3).map(str)
    fields = {key: st.sampled_from(choices[key]) if key in choices else numbers for key in methodology.data_schema}

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.fixed_dictionaries(fields), st.sampled_from(["1", "0.5", "0.3333"]), st.integers(0, 100))
    def check(data, share, credited_percent):
        try:
            parsed = engine.parse_action_data(methodology, data)
            quantity = engine.cap_quantity(version, parsed)
            credited = (quantity * credited_percent / 100).quantize(Decimal("0.000001"))
            full = engine.calculate(version, parsed, evidence_share=Decimal(share), credited_quantity=credited)
        except engine.ActionDataInvalid:
            return
        lean = engine.calculate(
            version, parsed, evidence_share=Decimal(share), credited_quantity=credited, params=params, lean=True
        )
        assert lean.breakdown == compact_breakdown(full.breakdown)
        assert (lean.grams, lean.quantity, lean.credited_quantity, lean.capped_quantity) == (
            full.grams,
            full.quantity,
            full.credited_quantity,
            full.capped_quantity,
        )

    check()
