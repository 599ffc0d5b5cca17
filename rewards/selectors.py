"""Every read the rewards API needs, with its query shape (select_related) fixed here."""

from datetime import date
from functools import cache

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from backend.core.bulk import BoundCursor
from backend.core.days import SHANGHAI, day_bounds, days_bounds
from backend.core.errors import ApplicationError
from rewards.models import Merchant, MerchantStaff, Reward, Voucher

MAX_ID = 2**63 - 1


def id_or_404(value: int) -> int:
    """Path ids beyond bigint are 404, not a database error."""
    if not 0 < int(value) <= MAX_ID:
        raise ApplicationError(_("Not found."), code="not_found", status_code=404)
    return int(value)


def staff_of(user) -> MerchantStaff:
    """The caller's merchant link; 403 `not_merchant_staff` for anyone else (admins included: they act in
    the Django admin, not at a counter)."""
    staff = MerchantStaff.objects.select_related("merchant").filter(user_id=user.pk).first()
    if staff is None:
        raise ApplicationError(_("You are not staff of a merchant."), code="not_merchant_staff", status_code=403)
    return staff


def public_rewards(
    *, district: str | None = None, category: str | None = None, merchant: int | None = None, max_cost=None
) -> QuerySet[Reward]:
    """Rewards a resident can redeem now: active, of an active merchant, inside their validity window."""
    now = timezone.now()
    qs = Reward.objects.select_related("merchant").filter(
        status=Reward.Status.ACTIVE,
        merchant__status=Merchant.Status.ACTIVE,
        valid_from__lte=now,
    )
    qs = qs.filter(Q(valid_until__isnull=True) | Q(valid_until__gt=now))
    if district:
        qs = qs.filter(merchant__district_id=district)
    if category:
        qs = qs.filter(category=category)
    if merchant:
        qs = qs.filter(merchant_id=merchant)
    if max_cost is not None:
        qs = qs.filter(points_cost__lte=max_cost)
    return qs


def public_reward_get(*, reward_id: int) -> Reward:
    reward = public_rewards().filter(pk=id_or_404(reward_id)).first()
    if reward is None:
        raise ApplicationError(_("No such reward."), code="not_found", status_code=404)
    return reward


def merchant_rewards(*, merchant_id: int, status: str | None = None) -> QuerySet[Reward]:
    qs = Reward.objects.filter(merchant_id=merchant_id)
    return qs.filter(status=status) if status else qs


def merchant_reward_get(*, merchant_id: int, reward_id: int) -> Reward:
    reward = merchant_rewards(merchant_id=merchant_id).filter(pk=id_or_404(reward_id)).first()
    if reward is None:  # another merchant's reward: 404, so nothing leaks
        raise ApplicationError(_("No such reward."), code="not_found", status_code=404)
    return reward


def resident_vouchers(*, resident_id: int, status: str | None = None) -> QuerySet[Voucher]:
    qs = Voucher.objects.select_related("reward", "merchant").filter(resident_id=resident_id)
    return qs.filter(status=status) if status else qs


def resident_voucher_get(*, resident_id: int, code: str) -> Voucher:
    from rewards.services import voucher_code_normalize

    voucher = resident_vouchers(resident_id=resident_id).filter(code=voucher_code_normalize(code)).first()
    if voucher is None:
        raise ApplicationError(_("No such voucher."), code="voucher_not_found", status_code=404)
    return voucher


def merchant_vouchers(*, merchant_id: int, status: str | None = None, day: date | None = None) -> QuerySet[Voucher]:
    """Vouchers of this merchant's rewards (default: those redeemed at its counters)."""
    qs = Voucher.objects.select_related("reward").filter(merchant_id=merchant_id, status=status or "redeemed")
    if day is not None:
        start, end = day_bounds(day)
        qs = qs.filter(redeemed_at__gte=start, redeemed_at__lt=end)
    return qs


def merchant_summary(*, merchant_id: int, date_from: date, date_to: date) -> list[dict]:
    """Per Asia/Shanghai day: vouchers redeemed at this merchant, points captured, face value owed (one query)."""
    start, end = days_bounds(date_from, date_to)
    rows = (
        Voucher.objects.filter(merchant_id=merchant_id, status="redeemed", redeemed_at__gte=start, redeemed_at__lt=end)
        .annotate(day=TruncDate("redeemed_at", tzinfo=SHANGHAI))
        .values("day", "currency")
        .annotate(vouchers=Count("id"), points=Sum("points_cost"), face_value_minor=Sum("face_value_minor"))
        .order_by("day", "currency")
    )
    return [
        {
            "day": r["day"],
            "vouchers": r["vouchers"],
            "points": r["points"],
            "face_value_minor": r["face_value_minor"],
            "currency": r["currency"],
        }
        for r in rows
    ]


@cache
def _reward_with_merchant_sql() -> tuple[str, list[str], list[str]]:
    reward_fields = [f.attname for f in Reward._meta.concrete_fields]
    merchant_fields = [f.attname for f in Merchant._meta.concrete_fields]
    columns = [f'r."{Reward._meta.get_field(n).column}"' for n in reward_fields]
    columns += [f'm."{Merchant._meta.get_field(n).column}"' for n in merchant_fields]
    sql = (  # identifiers from model metadata, never from input
        f"SELECT {', '.join(columns)} FROM rewards_reward r JOIN rewards_merchant m ON m.id = r.merchant_id"  # noqa: S608
        " WHERE r.id = %s"
    )
    return sql, reward_fields, merchant_fields


def reward_for_redemption(*, reward_id: int) -> Reward | None:
    """The reward with its merchant, for the redemption path (what `select_related("merchant")` loads, in one
    prepared statement: the ORM's query compilation was a fifth of a redemption's Python work)."""
    reward_id = min(int(reward_id), MAX_ID)
    db = connections[DEFAULT_DB_ALIAS]  # one look-up of the thread's connection, not one per attribute
    if db.vendor != "postgresql":
        return Reward.objects.select_related("merchant").filter(pk=reward_id).first()
    sql, reward_fields, merchant_fields = _reward_with_merchant_sql()
    with db.wrap_database_errors, BoundCursor() as cur:
        cur.execute(sql, [reward_id], prepare=True)
        row = cur.cursor.fetchone()
    if row is None:
        return None
    reward = Reward.from_db(db.alias, reward_fields, row[: len(reward_fields)])
    reward.merchant = Merchant.from_db(db.alias, merchant_fields, row[len(reward_fields) :])
    return reward
