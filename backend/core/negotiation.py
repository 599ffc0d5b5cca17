"""Content negotiation: DRF's, with its answer for the common Accept headers looked up instead of parsed.

Nearly every API request carries no Accept header, `*/*` or `application/json`, and no `?format=`: for those DRF's
DefaultContentNegotiation always picks the first renderer that takes JSON with the media type below (its media type
parsing and precedence ordering was a few % of a cached read's CPU). Anything else (another type, parameters such
as `indent`, a format override, a view whose first renderer is not JSON) goes through DRF unchanged.
tests/core/test_negotiation.py compares both for each header.
"""

from rest_framework.negotiation import DefaultContentNegotiation

# Accept header -> the media type DRF answers when the first renderer's media type is application/json.
_JSON_ANSWERS = {"*/*": "application/json", "application/json": "application/json", "application/*": "application/json"}


class ContentNegotiation(DefaultContentNegotiation):
    def select_renderer(self, request, renderers, format_suffix=None):
        if renderers and not format_suffix and renderers[0].media_type == "application/json":
            accept = request.META.get("HTTP_ACCEPT", "*/*")
            answer = _JSON_ANSWERS.get(accept)
            if answer is not None and self.settings.URL_FORMAT_OVERRIDE not in request.query_params:
                return renderers[0], answer
        return super().select_renderer(request, renderers, format_suffix)
