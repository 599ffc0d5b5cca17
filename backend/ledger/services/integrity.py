"""Integrity: balance reconciliation against postings and the daily Merkle roots (with every tree level stored,
so an inclusion proof reads one hash per level)."""

import hashlib
import logging
from datetime import date

from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from backend.core.days import day_bounds, local_today
from backend.core.errors import ApplicationError
from backend.ledger.merkle import merkle_levels
from backend.ledger.models import MerkleNode, MerkleRoot, ReconciliationRun
from backend.ledger.selectors import balance_drift, day_leaves

logger = logging.getLogger(__name__)
DAY_LOCK = 1279541593  # the advisory lock class of ledger days ("LDAY"), with the day's number since EPOCH
EPOCH = date(1970, 1, 1)


def balances_reconcile() -> ReconciliationRun:
    """Recompute every floored account's balance from its postings and record any drift (log, metric, admin
    view). Never corrects silently: drift is a bug to investigate."""
    run = ReconciliationRun.objects.create()
    checked, drift = balance_drift()
    run.accounts_checked = checked
    run.drift = drift
    run.drift_count = len(drift)
    run.finished_at = timezone.now()
    run.save(update_fields=["accounts_checked", "drift", "drift_count", "finished_at"])
    if drift:
        logger.error("ledger drift on %d account(s): %s", len(drift), drift[:20])
    return run


def merkle_root_compute(*, day: date) -> MerkleRoot:
    """Compute and store the Merkle root of one Asia/Shanghai day's transactions (by `booked_on`), with every
    level of its tree (so a proof reads one hash per level). Only a finished day, and on PostgreSQL only once no
    database transaction begun on that day is still open (`day_not_settled` otherwise; retry later): then no
    transaction can join the day any more, since a backfill onto it waits for the day's lock taken here and is
    refused once the root exists. Safe to run twice: an existing root is recomputed and compared; a mismatch is
    logged as tampering and the stored root kept (roots are immutable in the database)."""
    if day >= local_today():
        raise ApplicationError(_("Only finished days get a root."), code="day_not_finished")
    with transaction.atomic():
        if connection.vendor == "postgresql":
            _day_seal(day)
        ids, leaves = day_leaves(day=day)
        levels = merkle_levels(leaves)
        root = (levels[-1][0] if leaves else hashlib.sha256(b"").digest()).hex()
        stored, created = MerkleRoot.objects.get_or_create(day=day, defaults={"root": root, "leaf_count": len(leaves)})
        if not created and stored.root != root:
            logger.error("Merkle root of %s no longer reproducible: stored %s, now %s", day, stored.root, root)
            return stored
        if created or not MerkleNode.objects.filter(root=stored).exists():  # roots stored before levels were
            _merkle_nodes_store(stored, ids, levels if leaves else [])
    return stored


def _day_seal(day: date) -> None:
    """Take the day's advisory lock exclusively (held to commit; backfills onto the day hold it shared, see
    migration 0005) and make sure no database transaction begun on the day is still open: its transactions are
    booked on the day (the column defaults to the database transaction's start) and it could commit after the
    leaves are read, falling in no tree. Only sessions of this database, and only those whose start is visible
    to this role (all of the application's own)."""
    with connection.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", [DAY_LOCK, (day - EPOCH).days])
        if open_transactions_begun_before(day_bounds(day)[1]):
            raise ApplicationError(
                _("A database transaction begun on that day is still open; try again once it ends."),
                code="day_not_settled",
                status_code=409,
            )


def open_transactions_begun_before(moment) -> int:
    """How many other sessions of this database are in a transaction begun before `moment` (PostgreSQL)."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND xact_start < %s",
            [moment],
        )
        return cur.fetchone()[0]


def _merkle_nodes_store(root: MerkleRoot, transaction_ids: list[int], levels: list[list[bytes]]) -> None:
    nodes = [
        MerkleNode(
            root=root,
            level=level,
            position=position,
            hash=node,
            transaction_id=transaction_ids[position] if level == 0 else None,
        )
        for level, hashes in enumerate(levels)
        for position, node in enumerate(hashes)
    ]
    MerkleNode.objects.bulk_create(nodes, batch_size=5000)
