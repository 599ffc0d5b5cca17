"""Integrity: balance reconciliation against postings and the daily Merkle roots (with every tree level stored,
so an inclusion proof reads one hash per level)."""

import hashlib
import logging
from datetime import date

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from backend.core.days import local_today
from backend.core.errors import ApplicationError
from backend.ledger.merkle import merkle_levels
from backend.ledger.models import MerkleNode, MerkleRoot, ReconciliationRun
from backend.ledger.selectors import balance_drift, day_leaves

logger = logging.getLogger(__name__)


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
    """Compute and store the Merkle root of one Asia/Shanghai day's transactions, with every level of its tree
    (so a proof reads one hash per level). Safe to run twice: an existing root is recomputed and compared; a
    mismatch is logged as tampering and the stored root kept."""
    if day >= local_today():
        raise ApplicationError(_("Only finished days get a root."), code="day_not_finished")
    ids, leaves = day_leaves(day=day)
    levels = merkle_levels(leaves)
    root = (levels[-1][0] if leaves else hashlib.sha256(b"").digest()).hex()
    with transaction.atomic():
        stored, created = MerkleRoot.objects.get_or_create(day=day, defaults={"root": root, "leaf_count": len(leaves)})
        if not created and stored.root != root:
            logger.error("Merkle root of %s no longer reproducible: stored %s, now %s", day, stored.root, root)
            return stored
        if created or not MerkleNode.objects.filter(root=stored).exists():  # roots stored before levels were
            _merkle_nodes_store(stored, ids, levels if leaves else [])
    return stored


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
