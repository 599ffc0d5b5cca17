"""The API's JSON renderer: DRF's JSONRenderer output, byte for byte, written by orjson when it can be.

DRF renders with the standard library's json (about 0.25-0.34 ms for a 20-item ledger page on this machine, orjson
0.04 ms). orjson writes the same bytes as DRF for dicts, lists, tuples, str, int (64-bit), bool and None and their
subclasses (DRF's ReturnDict/ReturnList) with DRF's settings here (UNICODE_JSON: UTF-8, not \\u escapes;
COMPACT_JSON: no spaces). Everything else goes through DRF's own renderer, so its output does not change: values
DRF's encoder converts (Decimal, datetime, date, UUID, lazy translations, querysets...) reach `_refuse`; integers
beyond 64 bits make orjson fail; an indent asked for in the Accept header or other JSON settings skip orjson.
U+2028/U+2029 are escaped as DRF does. Floats: our API writes none (integers and strings only, GUIDE); orjson
and json agree on them except below 1e-4 (`0.000015` vs `1.5e-05`) and NaN/Infinity (null vs an error), so an
output with such a digit run is rendered again by DRF. tests/core/test_renderers.py compares both renderers.
"""

import orjson
from rest_framework import renderers
from rest_framework.settings import api_settings

_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


class _NotPlain(Exception):
    pass


def _refuse(value):
    raise _NotPlain


class JSONRenderer(renderers.JSONRenderer):
    def render(self, data, accepted_media_type=None, renderer_context=None):
        if (
            data is None
            or not (api_settings.UNICODE_JSON and api_settings.COMPACT_JSON and api_settings.STRICT_JSON)
            or self.get_indent(accepted_media_type, renderer_context or {}) is not None
        ):
            return super().render(data, accepted_media_type, renderer_context)
        try:
            out = orjson.dumps(data, default=_refuse, option=_OPTIONS)
        except (_NotPlain, orjson.JSONEncodeError, TypeError):
            return super().render(data, accepted_media_type, renderer_context)
        if b"0.0000" in out:  # maybe a float json would write in exponent notation: let DRF write it
            return super().render(data, accepted_media_type, renderer_context)
        if b"\xe2\x80\xa8" in out or b"\xe2\x80\xa9" in out:  # DRF escapes these (JavaScript line terminators)
            out = out.replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9", b"\\u2029")
        return out
