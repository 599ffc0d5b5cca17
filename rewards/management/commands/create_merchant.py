import json

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from rest_framework.exceptions import APIException, ValidationError

from rewards.catalogue import merchant_create, staff_add
from rewards.models import Category


class Command(BaseCommand):
    help = 'Create a merchant with its first staff login (a manager); --json prints {"merchant_id", "staff_user_id"}.'

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True, help="name (zh-hans)")
        parser.add_argument("--name-en", default="")
        parser.add_argument("--district", required=True, help="GB/T 2260 code, e.g. 370202")
        parser.add_argument("--address", default="")
        parser.add_argument("--category", default="other", choices=Category.values)
        parser.add_argument("--staff-phone", required=True)
        parser.add_argument("--staff-password", required=True)
        parser.add_argument("--staff-name", default="")
        parser.add_argument("--json", action="store_true", help='print {"merchant_id": ..., "staff_user_id": ...}')

    def handle(self, *args, **o):
        try:
            with transaction.atomic():
                merchant = merchant_create(
                    name_zh=o["name"],
                    name_en=o["name_en"],
                    district=o["district"],
                    address=o["address"],
                    category=o["category"],
                )
                staff = staff_add(
                    merchant=merchant,
                    phone=o["staff_phone"],
                    password=o["staff_password"],
                    display_name=o["staff_name"],
                    is_manager=True,
                )
        except (ValidationError, APIException) as exc:
            raise CommandError(json.dumps(exc.detail, ensure_ascii=False, default=str)) from None
        payload = {"merchant_id": merchant.pk, "staff_user_id": staff.user_id}
        if o["json"]:
            self.stdout.write(json.dumps(payload))
        else:
            self.stdout.write(f"merchant {merchant.pk} ({merchant.name_zh}) created; manager user {staff.user_id}")
