"""Request parsing that turns every malformed body into a 400, never a 500.

- `[` x 100,000 makes the json module raise RecursionError (not ValueError, which DRF catches).
- `NaN`, `Infinity` and `-Infinity` are not JSON: refused, as DRF's own parser does (`STRICT_JSON`).
- `"\\ud800"` parses into a str that holds a lone surrogate, which no UTF-8 writer (the renderer echoing an id
  back, PostgreSQL, Redis) accepts: refused here, so it is the client's 400 and not a 500 further down."""

import json
import re

from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions, parsers
from rest_framework.utils.json import strict_constant

# Far deeper than any document the API accepts; shallow enough to stay clear of Python's recursion limit.
MAX_JSON_DEPTH = 64
# The only way a lone surrogate gets into parsed JSON: an escape of one (raw UTF-8 cannot carry a surrogate).
# A pair of escapes (an emoji) matches too and is then checked exactly, string by string.
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def json_loads(text: str, **kwargs):
    """Strict json.loads that answers ParseError for too deep, malformed or non-UTF-8-encodable documents."""
    kwargs.setdefault("parse_constant", strict_constant)
    try:
        data = json.loads(text, **kwargs)
    except RecursionError:
        raise exceptions.ParseError(_("JSON nested too deeply."), code="json_too_deep") from None
    except ValueError as exc:
        raise exceptions.ParseError(_("JSON parse error - %(detail)s") % {"detail": exc}) from None
    if SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(data):
        raise exceptions.ParseError(_("JSON parse error - a string holds an unpaired surrogate escape."))
    return data


def _has_lone_surrogate(value) -> bool:
    stack = [value]
    while stack:  # iterative: the document may be as deep as the json module allows
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def read_text(stream, parser_context) -> str:
    encoding = (parser_context or {}).get("encoding", "utf-8")
    try:
        return stream.read().decode(encoding)
    except UnicodeDecodeError:
        raise exceptions.ParseError(_("The body is not valid %(encoding)s.") % {"encoding": encoding}) from None


class JSONParser(parsers.JSONParser):
    """DRF's JSONParser through `json_loads`: strict, and every malformed body a 400."""

    def parse(self, stream, media_type=None, parser_context=None):
        return json_loads(read_text(stream, parser_context))
