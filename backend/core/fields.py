"""Serializer fields shared by the APIs."""

from datetime import date

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from backend.core.days import SHANGHAI, day_bounds

local_day_bounds = day_bounds  # the name the APIs import; the helper itself lives in backend.core.days
__all__ = ["SHANGHAI", "LocalDayField", "SafeJSONField", "local_day_bounds"]


class LocalDayField(serializers.DateField):
    """An Asia/Shanghai calendar day whose bounds can be computed and stored (0001-01-01 and 9999-12-31 overflow
    once shifted to UTC or to the next day): anything outside 1900-2999 is a 400 `date_out_of_range`."""

    default_error_messages = {"date_out_of_range": _("Date must be between 1900-01-01 and 2999-12-31.")}
    MIN = date(1900, 1, 1)
    MAX = date(2999, 12, 31)

    def to_internal_value(self, value):
        day = super().to_internal_value(value)
        if not (self.MIN <= day <= self.MAX):
            self.fail("date_out_of_range")
        return day


class SafeJSONField(serializers.JSONField):
    """JSONField whose too-deep documents (`[` x 100,000 in a form field) are a 400, not a RecursionError."""

    def to_internal_value(self, data):
        try:
            return super().to_internal_value(data)
        except RecursionError:
            self.fail("invalid")


def datetime_text(value, tz) -> str | None:
    """What a DRF DateTimeField (ISO 8601, USE_TZ) writes for an aware datetime, in time zone `tz` (the active one,
    `timezone.get_current_timezone()`, read once per page): for hot lists that write rows out themselves."""
    if value is None:
        return None
    text = value.astimezone(tz).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text
