"""Payouts to merchants (merchant settlement, built on this once the rewards app has merchants and vouchers).

A small provider interface so settlement never talks to Stripe directly: `StripeConnectTransferProvider` pays
a connected account with a Stripe Connect transfer; `RecordingPayoutProvider` is the fake used by tests
(localstripe has no Connect). Both honour the idempotency key: a settlement task that runs twice, or crashes
after the transfer and retries, transfers once.

Merchant settlement (backend/offsets/settlement.py) is built on this. It follows the plan first written here,
with one change: Stripe keeps idempotency keys for 24 hours only, so a retry of a claimed settlement first asks
`find_transfer(transfer_group=...)` before sending the transfer again under the same key.
"""

import threading
from dataclasses import dataclass, field
from typing import Protocol

from django.conf import settings
from django.utils.module_loading import import_string


@dataclass(frozen=True)
class Transfer:
    id: str
    amount: int  # minor units
    currency: str  # ISO, upper case
    destination: str  # the merchant's connected account (acct_...)
    transfer_group: str  # the settlement id
    idempotency_key: str


class PayoutProvider(Protocol):
    def transfer(
        self,
        *,
        amount: int,
        currency: str,
        destination: str,
        transfer_group: str,
        idempotency_key: str,
        metadata: dict | None = None,
    ) -> Transfer: ...

    def find_transfer(self, *, transfer_group: str) -> Transfer | None: ...


class PayoutError(Exception):
    """The provider refused or could not be reached; `transient` says whether a retry may succeed."""

    def __init__(self, message: str, *, transient: bool):
        super().__init__(message)
        self.transient = transient


class StripeConnectTransferProvider:
    """Stripe Connect: `POST /v1/transfers` from the platform balance to a connected account."""

    def transfer(self, *, amount, currency, destination, transfer_group, idempotency_key, metadata=None) -> Transfer:
        import stripe

        from backend.offsets.gateway import stripe_client

        if amount <= 0:
            raise ValueError("a transfer moves a positive amount")
        try:
            result = stripe_client().v1.transfers.create(
                params={
                    "amount": amount,
                    "currency": currency.lower(),
                    "destination": destination,
                    "transfer_group": transfer_group,
                    "metadata": {k: str(v) for k, v in (metadata or {}).items()},
                },
                options={"idempotency_key": idempotency_key},
            )
        except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
            raise PayoutError(str(exc), transient=True) from exc
        except stripe.StripeError as exc:
            raise PayoutError(str(exc), transient=getattr(exc, "http_status", 400) >= 500) from exc
        return Transfer(result.id, result.amount, result.currency.upper(), destination, transfer_group, idempotency_key)

    def find_transfer(self, *, transfer_group: str) -> Transfer | None:
        """The transfer already made for a group, if any: Stripe keeps idempotency keys for 24 hours only, so a
        retry after a long outage looks the transfer up before sending a new one."""
        import stripe

        from backend.offsets.gateway import stripe_client

        try:
            found = stripe_client().v1.transfers.list(params={"transfer_group": transfer_group, "limit": 1})
        except stripe.StripeError as exc:
            raise PayoutError(str(exc), transient=True) from exc
        for t in found.data:
            return Transfer(t.id, t.amount, t.currency.upper(), t.destination, transfer_group, "")
        return None


@dataclass
class RecordingPayoutProvider:
    """Test fake: records every call; the same idempotency key returns the first transfer (as Stripe does);
    `fail_next` makes the next call raise (to test a crash between transfer and bookkeeping)."""

    calls: list[dict] = field(default_factory=list)
    transfers: dict[str, Transfer] = field(default_factory=dict)
    fail_next: PayoutError | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def transfer(self, *, amount, currency, destination, transfer_group, idempotency_key, metadata=None) -> Transfer:
        with self._lock:
            self.calls.append(
                {
                    "amount": amount,
                    "currency": currency,
                    "destination": destination,
                    "transfer_group": transfer_group,
                    "idempotency_key": idempotency_key,
                    "metadata": metadata or {},
                }
            )
            if self.fail_next is not None:
                error, self.fail_next = self.fail_next, None
                raise error
            if idempotency_key not in self.transfers:
                self.transfers[idempotency_key] = Transfer(
                    f"tr_fake_{len(self.transfers) + 1}",
                    amount,
                    currency.upper(),
                    destination,
                    transfer_group,
                    idempotency_key,
                )
            return self.transfers[idempotency_key]

    def find_transfer(self, *, transfer_group: str) -> Transfer | None:
        with self._lock:
            self.calls.append({"find": transfer_group})
            return next((t for t in self.transfers.values() if t.transfer_group == transfer_group), None)

    @property
    def paid_total(self) -> int:
        return sum(t.amount for t in self.transfers.values())


def payout_provider() -> PayoutProvider:
    """The configured provider (OFFSET_PAYOUT_PROVIDER, a dotted path to a class)."""
    return import_string(settings.OFFSET_PAYOUT_PROVIDER)()
