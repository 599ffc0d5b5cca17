"""Idempotent seeding of reference data. Running it twice changes nothing.

The seeders are one explicit list, SEEDERS in backend.core.seeding; each must be idempotent."""

from django.core.management.base import BaseCommand
from django.db import transaction

from backend.core.seeding import SEEDERS


class Command(BaseCommand):
    help = "Seed reference data (methodologies, policies ...). Idempotent."

    def handle(self, *args, **options):
        for name, seeder in SEEDERS:
            with transaction.atomic():
                changed = seeder()
            self.stdout.write(f"{name}: {changed} created or updated")
