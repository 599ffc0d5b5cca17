"""Request parsing that turns every malformed body into a 400, never a 500.

`[` x 100,000 makes the json module raise RecursionError (not ValueError, which DRF catches)."""

import json

from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions, parsers

# Far deeper than any document the API accepts; shallow enough to stay clear of Python's recursion limit.
MAX_JSON_DEPTH = 64


def json_loads(text: str, **kwargs):
    """json.loads that answers ParseError for too deep or malformed documents."""
    try:
        return json.loads(text, **kwargs)
    except RecursionError:
        raise exceptions.ParseError(_("JSON nested too deeply."), code="json_too_deep") from None
    except ValueError as exc:
        raise exceptions.ParseError(_("JSON parse error - %(detail)s") % {"detail": exc}) from None


class JSONParser(parsers.JSONParser):
    """DRF's JSONParser plus RecursionError handling."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError(_("JSON nested too deeply."), code="json_too_deep") from None
