"""Stripe behind two small functions (payments) through the official SDK. `STRIPE_API_BASE` points the SDK at
Stripe or, in tests and the quick start, at a local localstripe. Never called inside a database transaction:
a slow network must not hold row locks."""

from dataclasses import dataclass

import stripe
from django.conf import settings


def stripe_client() -> stripe.StripeClient:
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY,
        base_addresses={"api": settings.STRIPE_API_BASE, "connect": settings.STRIPE_API_BASE},
        # Safe to retry: every create carries an idempotency key derived from our own row.
        max_network_retries=2,
    )


@dataclass(frozen=True)
class CreatedIntent:
    id: str
    client_secret: str


def payment_intent_create(*, order_id: int, amount_fen: int, currency: str, buyer_id: int) -> CreatedIntent:
    """A card PaymentIntent for an order; the same order always gets the same idempotency key."""
    params = {
        "amount": amount_fen,
        "currency": currency.lower(),
        "payment_method_types": ["card"],
        "metadata": {"order_id": str(order_id), "buyer_id": str(buyer_id)},
    }
    if settings.STRIPE_TEST_PAYMENT_METHOD:
        params["payment_method"] = settings.STRIPE_TEST_PAYMENT_METHOD
    intent = stripe_client().v1.payment_intents.create(
        params=params, options={"idempotency_key": f"offset-order-{order_id}-intent"}
    )
    return CreatedIntent(id=intent.id, client_secret=intent.client_secret)


def payment_intent_cancel(*, payment_intent_id: str) -> bool:
    """Cancel an unpaid PaymentIntent. True when it is canceled (now or before); False when Stripe refuses
    because it succeeded or is being processed: then its webhook decides, not the expiry."""
    client = stripe_client()
    try:
        client.v1.payment_intents.cancel(payment_intent_id)
        return True
    except stripe.InvalidRequestError:
        try:
            intent = client.v1.payment_intents.retrieve(payment_intent_id)
        except stripe.InvalidRequestError as exc:
            return getattr(exc, "http_status", None) == 404
        return intent.status == "canceled"
