"""backend/core/renderers.py writes exactly DRF's JSONRenderer bytes (orjson where it can, DRF where it cannot)."""

import uuid
from collections import OrderedDict, namedtuple
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.utils.translation import gettext_lazy
from rest_framework import renderers
from rest_framework.utils.serializer_helpers import ReturnDict, ReturnList

from backend.core.renderers import JSONRenderer
from tests.conftest import client_for

Point = namedtuple("Point", "x y")

CASES = [
    {},
    [],
    {"a": 1, "b": [1, 2, {"c": None}], "d": True, "e": False},
    {"zh": "青碳行 公交出行 碳普惠", "emoji": "🚌", "ctrl": "tab\tnl\n\x00\x1f", "quote": '"\\/'},
    {"sep": "line\u2028para\u2029end"},
    {"big": 9 * 10**17, "neg": -(2**63), "max": 2**63 - 1},
    {"huge": 2**64, "huger": -(2**70)},
    {"decimal": Decimal("12.500"), "money": Decimal("0.01")},
    {"at": datetime(2026, 11, 27, 1, 2, 3, 456789, tzinfo=UTC), "on": date(2026, 11, 27)},
    {"id": uuid.UUID(int=7)},
    {"lazy": gettext_lazy("Not found.")},
    {"floats": [0.1, 1.0, 1e16, 1.5e-05, 123456789.123, -0.0, 1e-4]},
    {"tuple": (1, 2), "named": Point(1, 2)},
    OrderedDict([("z", 1), ("a", 2)]),
    ReturnDict({"x": [1]}, serializer=None),
    ReturnList([{"x": 1}], serializer=None),
    {1: "int key"},
    "just a string",
    12,
    None,
]


@pytest.mark.parametrize("data", CASES, ids=range(len(CASES)))
def test_same_bytes_as_drf(data):
    assert JSONRenderer().render(data) == renderers.JSONRenderer().render(data)


def test_indent_asked_for_is_drf_s():
    data = {"a": [1, 2]}
    mine = JSONRenderer().render(data, "application/json; indent=2", {})
    assert mine == renderers.JSONRenderer().render(data, "application/json; indent=2", {})
    assert b"\n" in mine


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/v1/me/wallet", "/api/v1/me/ledger", "/api/v1/me/actions", "/api/v1/rewards"])
def test_api_responses_are_drf_s_bytes(resident, path, reference_data):
    response = client_for(resident).get(path)
    assert response.status_code == 200
    assert isinstance(response.accepted_renderer, JSONRenderer)
    assert response.content == renderers.JSONRenderer().render(response.data)
