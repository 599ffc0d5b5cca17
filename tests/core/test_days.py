"""The one Asia/Shanghai day helper (backend.core.days) every app uses."""

from datetime import UTC, date, datetime

from backend.core.days import SHANGHAI, day_bounds, day_start, days_bounds, local_day
from backend.core.fields import LocalDayField


def test_local_day_is_the_shanghai_calendar_day():
    # 16:00 UTC is already the next day in Shanghai (+08:00, no daylight saving).
    assert local_day(datetime(2026, 11, 30, 15, 59, tzinfo=UTC)) == date(2026, 11, 30)
    assert local_day(datetime(2026, 11, 30, 16, 0, tzinfo=UTC)) == date(2026, 12, 1)


def test_day_bounds_are_half_open_and_aware():
    start, end = day_bounds(date(2026, 11, 27))
    assert start == datetime(2026, 11, 26, 16, tzinfo=UTC)
    assert end == datetime(2026, 11, 27, 16, tzinfo=UTC)
    assert start.tzinfo is SHANGHAI and day_start(date(2026, 11, 27)) == start


def test_days_bounds_cover_an_inclusive_range():
    assert days_bounds(date(2026, 11, 1), date(2026, 11, 30)) == (
        datetime(2026, 10, 31, 16, tzinfo=UTC),
        datetime(2026, 11, 30, 16, tzinfo=UTC),
    )


def test_bounds_do_not_overflow_at_the_edges_of_the_accepted_range():
    # LocalDayField keeps user days within these edges; both bounds still convert to UTC.
    for day in (LocalDayField.MIN, LocalDayField.MAX):
        start, end = day_bounds(day)
        assert start.astimezone(UTC) < end.astimezone(UTC)
