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

    def handle(self, *args, role, phone, password, display_name, district, **options):
        try:
            # Operators create staff accounts; the strength rules still apply to them.
            user = user_create(phone=phone, password=password, role=role, display_name=display_name, district=district)
        except (ValidationError, APIException) as exc:
            raise CommandError(json.dumps(exc.detail, ensure_ascii=False, default=str)) from None
        self.stdout.write(json.dumps({"user_id": user.pk, "role": user.role, "phone": user.phone_masked}))
