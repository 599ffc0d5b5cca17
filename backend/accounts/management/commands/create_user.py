import json

from django.core.management.base import BaseCommand, CommandError
from rest_framework.exceptions import APIException, ValidationError

from backend.accounts.models import User
from backend.accounts.services import user_create


class Command(BaseCommand):
    help = 'Create a user of any role; prints {"user_id": ...} as JSON.'

    def add_arguments(self, parser):
        parser.add_argument("--role", required=True, choices=User.Role.values)
        parser.add_argument("--phone", required=True)
        parser.add_argument("--password", required=True)
        parser.add_argument("--display-name", default="")
        parser.add_argument("--district", default=None)
        parser.add_argument("--company", default="", help="Company name (role buyer).")
        parser.add_argument("--tax-id", default="", help="Unified social credit code, 18 characters (role buyer).")

    def handle(self, *args, role, phone, password, display_name, district, company, tax_id, **options):
        if (role == User.Role.BUYER) != bool(company or tax_id):
            raise CommandError("--company and --tax-id go with --role buyer (and only with it)")
        try:
            if role == User.Role.BUYER:
                from backend.offsets.services import buyer_create

                user = buyer_create(phone=phone, password=password, company_name=company, tax_id=tax_id)
            else:
                # Operators create staff accounts; the strength rules still apply to them.
                user = user_create(
                    phone=phone, password=password, role=role, display_name=display_name, district=district
                )
        except (ValidationError, APIException) as exc:
            raise CommandError(json.dumps(exc.detail, ensure_ascii=False, default=str)) from None
        self.stdout.write(json.dumps({"user_id": user.pk, "role": user.role, "phone": user.phone_masked}))
