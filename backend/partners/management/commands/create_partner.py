import json as jsonlib

from django.core.management.base import BaseCommand, CommandError
from rest_framework.exceptions import APIException

from backend.partners.services import partner_create


class Command(BaseCommand):
    help = "Create a data partner; prints its id and first HMAC secret (shown once)."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)
        parser.add_argument("--methodologies", required=True, help="comma-separated codes, e.g. bus_ride,metro_ride")
        parser.add_argument(
            "--subject-kinds",
            default="",
            help="comma-separated card/account kinds it attests links for, e.g. transit_card,metro_card",
        )
        parser.add_argument("--json", action="store_true", help='print {"partner_id": ..., "secret": ...}')

    def handle(self, *args, name, methodologies, subject_kinds, **options):
        try:
            partner, secret = partner_create(
                name=name, methodologies=methodologies.split(","), subject_kinds=subject_kinds.split(",")
            )
        except APIException as exc:
            raise CommandError(str(exc.detail)) from None
        payload = {"partner_id": partner.pk, "secret": secret}
        if options["json"]:
            self.stdout.write(jsonlib.dumps(payload))
        else:
            self.stdout.write(f"partner {partner.pk} ({partner.name}) created; secret: {secret} (store it now)")
