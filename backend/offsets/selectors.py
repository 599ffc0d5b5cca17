"""Every read the offsets API needs."""

from django.db.models import QuerySet

from backend.ledger.models import Account
from backend.offsets.models import Certificate, CertificationBatch, OffsetOrder


def certificate_of_buyer(*, buyer_id: int, certificate_id: int) -> Certificate | None:
    """A buyer's own certificate; another buyer's is the same as none (404)."""
    return Certificate.objects.filter(id=certificate_id, buyer_id=buyer_id).first()


def certificate_by_code(*, code: str) -> Certificate | None:
    return Certificate.objects.filter(code=code).first()


def batches_on_sale() -> QuerySet[CertificationBatch]:
    return CertificationBatch.objects.filter(status=CertificationBatch.Status.ACTIVE, available_kg__gt=0).order_by("id")


def orders_of_buyer(*, buyer_id: int) -> QuerySet[OffsetOrder]:
    return OffsetOrder.objects.filter(buyer_id=buyer_id).select_related("certificate").order_by("-id")


def reward_fund_balance(*, currency: str = "CNY") -> int:
    """The money reward fund's balance in minor units (a floored account: its cached balance is exact)."""
    from backend.offsets.services import reward_fund_key

    return Account.objects.filter(key=reward_fund_key(currency)).values_list("balance", flat=True).first() or 0


def outstanding_payables(*, currency: str = "CNY") -> int:
    """What merchants are owed and not yet paid (minor units): waiting for funds, funded, or in a settlement
    that is not paid yet."""
    from backend.offsets.settlement import outstanding_payables as by_status

    return sum(by_status(currency=currency).values())
