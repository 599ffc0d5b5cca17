"""`python manage.py ledger_verify`: check every ledger invariant; exit non-zero on the first violation."""

from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from tqdm import tqdm

from backend.ledger import merkle, selectors
from backend.ledger.models import MerkleRoot

LOT_MISMATCH = (
    "SELECT l.id FROM ledger_pointslot l LEFT JOIN (SELECT lot_id, sum(amount) s FROM ledger_lotconsumption"
    " GROUP BY lot_id) c ON c.lot_id = l.id WHERE l.amount <> l.remaining + coalesce(c.s, 0) LIMIT 1"
)


class Command(BaseCommand):
    help = "Verify ledger invariants: zero-sum, non-negative, cached = postings, lots, Merkle roots."

    def handle(self, *args, **options):
        roots = list(MerkleRoot.objects.order_by("day"))
        checks = [
            ("zero-sum per transaction and unit", self._zero_sum),
            ("at least two postings per transaction", self._two_postings),
            ("no negative balance", self._non_negative),
            ("cached balances = postings = lots", self._cached),
            ("lots: issued = remaining + consumed", self._lots),
        ] + [(f"Merkle root {r.day}", lambda r=r: self._root(r)) for r in roots]
        with tqdm(total=len(checks), unit="check", disable=options.get("verbosity", 1) == 0) as bar:
            for name, check in checks:
                bar.set_description(name)
                problem = check()
                if problem:
                    raise CommandError(f"{name}: {problem}")
                bar.update()
        self.stdout.write(self.style.SUCCESS(f"ledger ok: {len(checks)} checks passed"))

    def _zero_sum(self):
        bad = selectors.unbalanced_transactions(limit=5)
        return f"transactions {bad} do not sum to zero" if bad else None

    def _two_postings(self):
        with connection.cursor() as cur:
            cur.execute(
                "SELECT t.id FROM ledger_ledgertransaction t LEFT JOIN ledger_posting p ON p.transaction_id = t.id"
                " GROUP BY t.id HAVING count(p.id) < 2 LIMIT 5"
            )
            bad = [r[0] for r in cur.fetchall()]
        return f"transactions {bad} have fewer than two postings" if bad else None

    def _non_negative(self):
        with connection.cursor() as cur:
            cur.execute("SELECT key FROM ledger_account WHERE balance < 0 LIMIT 5")
            bad = [r[0] for r in cur.fetchall()]
        return f"negative balances on {bad}" if bad else None

    def _cached(self):
        _, drift = selectors.balance_drift()
        return f"drift {drift[:5]}" if drift else None

    def _lots(self):
        with connection.cursor() as cur:
            cur.execute(LOT_MISMATCH)
            row = cur.fetchone()
        return f"lot {row[0]} does not add up" if row else None

    def _root(self, stored):
        root = merkle.merkle_root(selectors.day_leaf_hashes(day=stored.day)).hex()
        return f"stored {stored.root}, recomputed {root}" if root != stored.root else None
