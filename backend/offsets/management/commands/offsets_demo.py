"""Quick-start demo of the offset purchase (make run, localstripe): certified inventory and a buyer, or
`--confirm pi_...` to confirm a PaymentIntent at localstripe as the buyer's browser would with Stripe.js."""

import json
from datetime import timedelta
from urllib.parse import urlparse

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

DEMO_BUYER_PHONE = "13900009999"
DEMO_PASSWORD = "Demo-Carbon-2026!"
DEMO_TAX_BODY = "91370200MA3D00001"


class Command(BaseCommand):
    help = "Demo data for the offset purchase, or confirm a PaymentIntent at the local Stripe emulator."

    def add_arguments(self, parser):
        parser.add_argument("--confirm", metavar="PAYMENT_INTENT_ID", default="")

    def handle(self, *args, confirm, **options):
        if urlparse(settings.STRIPE_API_BASE).hostname not in ("127.0.0.1", "localhost"):
            raise CommandError("offsets_demo only talks to a local Stripe emulator (STRIPE_API_BASE on loopback)")
        if confirm:
            from backend.offsets.gateway import stripe_client

            intent = stripe_client().v1.payment_intents.confirm(confirm)
            self.stdout.write(json.dumps({"payment_intent": intent.id, "status": intent.status}))
            return
        self.stdout.write(json.dumps(self._inventory_and_buyer(), ensure_ascii=False))

    @transaction.atomic
    def _inventory_and_buyer(self) -> dict:
        from backend.accounts.models import User
        from backend.accounts.services import user_create, user_register
        from backend.actions.models import Action
        from backend.ledger.services import ActionCredit, action_credits_post_bulk
        from backend.offsets.inventory import batch_create
        from backend.offsets.models import Buyer
        from backend.offsets.services import buyer_create, uscc_check_char

        reviewer = User.objects.filter(role="reviewer").first() or user_create(
            phone="13900009998", password=DEMO_PASSWORD, role="reviewer"
        )
        resident = User.objects.filter(role="resident").first() or user_register(
            phone="13900009997",
            password=DEMO_PASSWORD,
            display_name="演示居民",
            district="370202",
            partner_data_consent=True,
        )
        day = timezone.localdate() - timedelta(days=1)
        when = timezone.make_aware(timezone.datetime.combine(day, timezone.datetime.min.time())) + timedelta(hours=8)
        actions = Action.objects.bulk_create(
            Action(
                resident=resident,
                methodology="metro_ride",
                occurred_at=when,
                status="credited",
                source="self_report",
                grams=25_000,
                points=25,
                reason="demo",
            )
            for _ in range(20)
        )
        action_credits_post_bulk(
            credits=[
                ActionCredit(
                    idempotency_key=f"action:{a.id}",
                    resident_id=resident.id,
                    methodology="metro_ride",
                    grams=a.grams,
                    points=a.points,
                    reason="Demo metro ride",
                    source_type="action",
                    source_id=a.id,
                    effective_at=when,
                )
                for a in actions
            ]
        )
        batch = batch_create(methodology="metro_ride", period_start=day, period_end=day, created_by=reviewer)
        tax_id = DEMO_TAX_BODY + uscc_check_char(DEMO_TAX_BODY)
        if not Buyer.objects.filter(tax_id=tax_id).exists():
            buyer_create(
                phone=DEMO_BUYER_PHONE, password=DEMO_PASSWORD, company_name="青岛演示低碳科技有限公司", tax_id=tax_id
            )
        return {
            "batch": batch.id,
            "certified_kg": batch.certified_kg,
            "buyer_phone": DEMO_BUYER_PHONE,
            "buyer_password": DEMO_PASSWORD,
        }
