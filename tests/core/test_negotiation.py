"""backend/core/negotiation.py answers the common Accept headers exactly as DRF's DefaultContentNegotiation does."""

import pytest
from django.test import RequestFactory
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BrowsableAPIRenderer, TemplateHTMLRenderer
from rest_framework.request import Request

from backend.core.negotiation import ContentNegotiation
from backend.core.renderers import JSONRenderer
from tests.conftest import client_for

HEADERS = [
    None,
    "*/*",
    "application/json",
    "application/*",
    "application/json; indent=4",
    "text/html",
    "text/html,application/json;q=0.9",
    "application/xml",
    "*/*; q=0.5",
]


def choose(negotiation, accept, query="", renderers=(JSONRenderer, BrowsableAPIRenderer)):
    extra = {} if accept is None else {"HTTP_ACCEPT": accept}
    request = Request(RequestFactory().get("/x" + query, **extra))
    try:
        renderer, media_type = negotiation.select_renderer(request, [r() for r in renderers])
    except Exception as exc:  # NotAcceptable
        return type(exc).__name__
    return type(renderer).__name__, media_type


@pytest.mark.parametrize("accept", HEADERS)
@pytest.mark.parametrize("query", ["", "?format=json", "?format=api", "?page_size=3"])
def test_same_choice_as_drf(accept, query):
    assert choose(ContentNegotiation(), accept, query) == choose(DefaultContentNegotiation(), accept, query)


@pytest.mark.parametrize("accept", HEADERS)
def test_a_view_whose_first_renderer_is_not_json_goes_through_drf(accept):
    renderers = (TemplateHTMLRenderer, JSONRenderer)
    assert choose(ContentNegotiation(), accept, renderers=renderers) == choose(
        DefaultContentNegotiation(), accept, renderers=renderers
    )


@pytest.mark.django_db
def test_api_answers_json_or_406(resident):
    api = client_for(resident)
    assert api.get("/api/v1/me/wallet", HTTP_ACCEPT="*/*")["Content-Type"] == "application/json"
    assert api.get("/api/v1/me/wallet", HTTP_ACCEPT="application/xml").status_code == 406
    assert b"\n" in api.get("/api/v1/me/wallet", HTTP_ACCEPT="application/json; indent=2").content
