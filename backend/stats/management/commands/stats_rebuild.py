from datetime import date

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from backend.stats.aggregation import rebuild_id_span
from backend.stats.services import stats_aggregate, stats_rebuild


class Command(BaseCommand):
    help = (
        "Catch the aggregates up with the ledger, then recompute the statistics of a range of Asia/Shanghai days "
        "(inclusive) from the ledger."
    )

    def add_arguments(self, parser):
        parser.add_argument("--from", dest="start", required=True, help="First day, YYYY-MM-DD")
        parser.add_argument("--to", dest="end", required=True, help="Last day, YYYY-MM-DD")
        parser.add_argument("--chunk", type=int, default=5000, help="Ledger transaction ids per step")

    def handle(self, *args, start, end, chunk, **options):
        try:
            first, last = date.fromisoformat(start), date.fromisoformat(end)
        except ValueError as exc:
            raise CommandError(f"Dates are YYYY-MM-DD: {exc}")
        if last < first:
            raise CommandError("--to is before --from")
        if chunk < 1:
            raise CommandError("--chunk must be positive")
        caught_up = stats_aggregate()  # the rebuild covers what is aggregated: first catch up to the horizon
        self.stderr.write(f"aggregated up to {caught_up['horizon']:%Y-%m-%d %H:%M:%S%z}")
        with tqdm(total=rebuild_id_span(), unit="txn ids", desc="ledger", file=self.stderr._out) as bar:
            result = stats_rebuild(start=first, end=last, progress=bar.update, chunk=chunk)
        self.stdout.write(self.style.SUCCESS(f"rebuilt {result['days']} day(s) from {first} to {last}"))
