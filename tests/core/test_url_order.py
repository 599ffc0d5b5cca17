"""backend/urls.py puts the hot reads' URL modules first. That changes no answer only while no two modules under
/api/v1/ can match the same path: every route of one module (with literal and placeholder segments) must be matched
by no pattern of another module."""

import re

from django.urls import URLResolver

from backend.urls import api_v1


def samples(route: str) -> list[str]:
    """Paths the route matches: each placeholder as a number and as a word."""
    return [re.sub(r"<(?:\w+:)?\w+>", value, route) for value in ("7", "bus_ride")]


def name_of(include: URLResolver) -> str:
    return getattr(include.urlconf_name, "__name__", str(include.urlconf_name))


def test_no_two_api_modules_share_a_path():
    modules = [(name_of(include), include.url_patterns) for include in api_v1 if isinstance(include, URLResolver)]
    assert len(modules) >= 7
    for name, patterns in modules:
        for other_name, other_patterns in modules:
            if other_name == name:
                continue
            for pattern in patterns:
                for path in samples(str(pattern.pattern)):
                    clash = [str(p.pattern) for p in other_patterns if p.resolve(path)]
                    assert not clash, f"{path} of {name} also matches {clash} of {other_name}"


def test_hot_reads_resolve_first():
    first = [name_of(include) for include in api_v1[:4]]
    assert first == ["backend.ledger.urls", "backend.actions.urls", "backend.methodologies.urls", "rewards.urls"]
