"""Asia/Shanghai calendar days: the platform's one notion of "a day" (stats, caps, proofs, lots, reports).

Every app takes its zone and day bounds from here rather than keeping its own `ZoneInfo("Asia/Shanghai")`.
"""

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.db.models import DateField, Func

SHANGHAI = ZoneInfo("Asia/Shanghai")


def local_day(at: datetime) -> date:
    """The Asia/Shanghai calendar day of an aware moment."""
    return at.astimezone(SHANGHAI).date()


def local_today() -> date:
    """Today in Asia/Shanghai."""
    from django.utils import timezone

    return local_day(timezone.now())


def day_start(day: date) -> datetime:
    """00:00 Asia/Shanghai of `day`, aware."""
    return datetime.combine(day, time.min, tzinfo=SHANGHAI)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """[start, end) of one Asia/Shanghai calendar day as aware datetimes. Days from user input are kept within
    1900-2999 by `core.fields.LocalDayField`, so neither bound overflows (0001-01-01 and 9999-12-31 would once
    shifted to UTC or to the next day)."""
    start = day_start(day)
    return start, start + timedelta(days=1)


def days_bounds(first: date, last: date) -> tuple[datetime, datetime]:
    """[start of `first`, end of `last`) in Asia/Shanghai: an inclusive range of days as aware datetimes."""
    return day_start(first), day_start(last + timedelta(days=1))


class LocalToday(Func):
    """Today in Asia/Shanghai by the database's clock (start of the database transaction): a column default.
    Asia/Shanghai has kept UTC+8 without daylight saving since 1991, which the SQLite form relies on."""

    output_field = DateField()
    allowed_default = True
    template = "((now() AT TIME ZONE 'Asia/Shanghai')::date)"

    def as_sqlite(self, compiler, connection, **extra_context):
        return "(date('now', '+8 hours'))", []
