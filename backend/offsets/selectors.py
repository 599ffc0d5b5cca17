"""Every read the offsets API needs."""

from django.db.models import Q, QuerySet, Sum

from backend.ledger.models import Account
from backend.offsets.models import Certificate, CertificationBatch, MerchantPayable, OffsetOrder


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
    from backend.offsets.fund import reward_fund_key

    return Account.objects.filter(key=reward_fund_key(currency)).values_list("balance", flat=True).first() or 0


def outstanding_payables(*, currency: str = "CNY") -> int:
    """What merchants are owed and not yet paid (minor units): waiting for funds, funded, or in a settlement
    that is not paid yet."""
    from backend.offsets.settlement import outstanding_payables as by_status

    return sum(by_status(currency=currency).values())


def reward_fund_deficit(*, currency: str = "CNY") -> int:
    """What the reward fund owes after refunds it could not cover (minor units, >= 0; see offsets/fund.py)."""
    from backend.offsets.fund import deficit_owed

    return deficit_owed(currency)


def reward_fund_statement(*, currency: str = "CNY") -> dict[str, int]:
    """The reward fund reconciled: what the ledger holds (fund balance minus deficit owed) against what the
    orders and payables say it should (paid in - refunded - payables funded). `difference` is 0 unless
    something posted to the fund outside the offsets services."""
    orders = OffsetOrder.objects.filter(currency=currency, payment_txn_id__isnull=False).aggregate(
        paid_in=Sum("amount_fen"),
        refunded=Sum("amount_fen", filter=Q(status=OffsetOrder.Status.REFUNDED)),
        shortfalls=Sum("refund_shortfall_fen"),
    )
    funded = MerchantPayable.objects.filter(
        currency=currency, status__in=[MerchantPayable.Status.FUNDED, MerchantPayable.Status.SETTLED]
    ).aggregate(s=Sum("amount_minor"))["s"]
    balance = reward_fund_balance(currency=currency)
    deficit = reward_fund_deficit(currency=currency)
    expected = (orders["paid_in"] or 0) - (orders["refunded"] or 0) - (funded or 0)
    return {
        "paid_in": orders["paid_in"] or 0,
        "refunded": orders["refunded"] or 0,
        "refund_shortfalls": orders["shortfalls"] or 0,
        "payables_funded": funded or 0,
        "fund_balance": balance,
        "deficit": deficit,
        "net": balance - deficit,
        "expected": expected,
        "difference": balance - deficit - expected,
    }
