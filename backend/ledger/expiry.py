"""When points lots expire (pure date arithmetic in Asia/Shanghai). Shared by the ledger services, which
create and expire lots, and the selectors, which show a resident what expires when."""

import calendar
from datetime import date, datetime

from backend.core.days import SHANGHAI


def lot_expires_at(effective_at: datetime, months: int = 12) -> datetime:
    """Points earned in a month expire at the end of the `months`-th month after it (Asia/Shanghai): earned
    2026-11-24 with 12 months -> valid through 2027-11-30, i.e. expires at 2027-12-01 00:00 +08:00."""
    local = effective_at.astimezone(SHANGHAI)
    index = local.year * 12 + (local.month - 1) + months + 1
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=SHANGHAI)


def lot_last_valid_day(expires_at: datetime) -> date:
    """The last Asia/Shanghai day on which a lot expiring at `expires_at` can still be spent."""
    local = expires_at.astimezone(SHANGHAI)
    year, month = (local.year, local.month - 1) if local.month > 1 else (local.year - 1, 12)
    return date(year, month, calendar.monthrange(year, month)[1])
