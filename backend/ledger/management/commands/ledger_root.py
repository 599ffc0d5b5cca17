"""Compute (or check) the Merkle root of one Asia/Shanghai day on demand, as the nightly beat task does."""

from datetime import date, timedelta

from django.core.management.base import BaseCommand, CommandError

from backend.core.days import local_today
from backend.core.errors import ApplicationError
from backend.ledger import services


class Command(BaseCommand):
    help = "Compute the Merkle root of an Asia/Shanghai day (default: yesterday). Safe to run twice."

    def add_arguments(self, parser):
        parser.add_argument("--day", type=date.fromisoformat, help="YYYY-MM-DD, a finished day")

    def handle(self, *args, day: date | None = None, **options):
        day = day or local_today() - timedelta(days=1)
        try:
            root = services.merkle_root_compute(day=day)
        except ApplicationError as exc:
            raise CommandError(f"{exc.get_codes()}: {exc.detail}") from None
        self.stdout.write(f"{root.day} root {root.root} over {root.leaf_count} transaction(s)")
