"""Idempotent seeding of reference data. Running it twice changes nothing.

The seeders are one explicit list, SEEDERS in backend.core.seeding; each must be idempotent. `--demo` adds
the quick-start demo (backend/demo.py: a partner, residents with linked cards and a week of credited rides, a
reviewer, an admin), which `make run` asks for unless SEED_DEMO=0."""

from django.core.management.base import BaseCommand
from django.db import transaction

from backend.core.seeding import SEEDERS, seed_line


class Command(BaseCommand):
    help = "Seed reference data (methodologies, policies ...); --demo adds the quick-start demo. Idempotent."

    def add_arguments(self, parser):
        parser.add_argument("--demo", action="store_true", help="also seed the quick-start demo (development only)")

    def handle(self, *args, demo: bool = False, **options):
        for name, seeder in SEEDERS:
            with transaction.atomic():
                changed = seeder()
            self.stdout.write(seed_line(name, changed))
        if demo:
            from backend.demo import demo_seed

            # Not one transaction: the demo goes through the services as real clients do (each commits its own
            # step, and the pipeline processes a batch after its ingestion committed).
            for line in demo_seed().lines():
                self.stdout.write(line)
