"""Writes on actions: partner ingestion, self-reports, review, housekeeping. Partner-attested linking of
cards (and claiming) is in links.py; the bulk processing itself in the pipeline/ package."""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.core.files.base import ContentFile
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _

from backend.actions.history import history_materialize
from backend.actions.links import binding_create  # noqa: F401  (operators' tooling and tests bind through it)
from backend.actions.models import (
    Action,
    ActionStatusChange,
    IngestBatch,
    LinkCode,
    PeriodClaim,
    SubjectBinding,
    SubjectKind,
)
from backend.actions.pipeline import (
    actions_process,
    batch_actions_process,
    batches_close,
    claims_release,
    has_credit,
)
from backend.actions.subjects import normalize_identifier, subject_hash, subject_last4
from backend.core.bulk import BoundCursor
from backend.core.errors import ApplicationError, ConflictError
from backend.partners.models import Partner
from backend.partners.services import partner_nonce_record

logger = logging.getLogger(__name__)
MAX_ACTIONS_PER_REQUEST = 1000
MAX_AGE = timedelta(days=7)  # older partner records are refused (`too_old`)
FUTURE_TOLERANCE = timedelta(minutes=5)  # partner clocks drift a little
UNCLAIMED_RETENTION = timedelta(days=30)
RECONCILE_AFTER = timedelta(minutes=2)
RECONCILE_CHUNK = 1000


def _item_error(code: str, detail: str, attr: str | None = None) -> dict:
    return {"code": code, "detail": detail, "attr": attr}


def _result(external_id, status: str, error: dict | None = None) -> dict:
    return {"external_id": external_id, "status": status, "error": error}


def _validate_item(item, index: int, partner: Partner, methodologies: dict, now: datetime):
    """Returns (Action, None) for a valid item or (None, error) — a bad item never blocks the good ones."""
    from backend.methodologies import engine

    if not isinstance(item, dict):
        return None, _item_error("invalid_item", _("Each action must be an object."), str(index))
    external_id = item.get("external_id")
    if (
        not isinstance(external_id, str)
        or not external_id.strip()
        or len(external_id) > 128
        or not _text_storable(external_id)
    ):
        return None, _item_error(
            "invalid_external_id", _("external_id must be a string of 1 to 128 characters."), "external_id"
        )
    code = item.get("methodology")
    methodology = methodologies.get(code) if isinstance(code, str) else None
    if methodology is None:
        return None, _item_error("unknown_methodology", _("Unknown methodology."), "methodology")
    if code not in (partner.methodologies or []):
        return None, _item_error(
            "methodology_not_allowed", _("This partner may not submit this methodology."), "methodology"
        )
    subject = item.get("subject")
    if not isinstance(subject, dict) or subject.get("kind") not in SUBJECT_KINDS:
        return None, _item_error(
            "invalid_subject", _("subject.kind must be one of: %s.") % ", ".join(SubjectKind.values), "subject.kind"
        )
    identifier = subject.get("identifier")
    if (
        not isinstance(identifier, str | int)
        or not normalize_identifier(str(identifier))
        or len(str(identifier)) > 128
        or not _text_storable(str(identifier))  # its last 4 characters are stored
    ):
        return None, _item_error("invalid_subject", _("subject.identifier is required."), "subject.identifier")
    occurred_at = parse_occurred_at(item.get("occurred_at"))
    if occurred_at is None or occurred_at.tzinfo is None:
        return None, _item_error(
            "invalid_occurred_at", _("occurred_at must be ISO 8601 with a time zone."), "occurred_at"
        )
    if occurred_at > now + FUTURE_TOLERANCE:
        return None, _item_error("occurred_in_future", _("occurred_at is in the future."), "occurred_at")
    if occurred_at < now - MAX_AGE:
        return None, _item_error("too_old", _("Actions older than 7 days are not accepted."), "occurred_at")
    data = item.get("data")
    if not isinstance(data, dict):
        return None, _item_error("invalid_data", _("data must be an object."), "data")
    try:
        parsed = engine.parse_action_data(methodology, data)
    except engine.ActionDataInvalid as exc:
        return None, _item_error("invalid_data", exc.detail, f"data.{exc.field}")
    kind = subject["kind"]
    action = NewAction(
        external_id=external_id,
        methodology=code,
        subject_kind=kind,
        subject_hash=subject_hash(kind, str(identifier)),
        subject_last4=subject_last4(str(identifier)),
        occurred_at=occurred_at,
        data=_storable(parsed),
    )
    return action, None


SUBJECT_KINDS = frozenset(SubjectKind.values)


@dataclass(slots=True)
class NewAction:
    """A valid partner item on its way into actions_action (a model instance per item cost a third of the
    request's CPU, and the insert is one SQL statement anyway)."""

    external_id: str
    methodology: str
    subject_kind: str
    subject_hash: str
    subject_last4: str
    occurred_at: datetime
    data: dict

    def as_model(self, *, batch: IngestBatch) -> Action:
        return Action(
            source=Action.Source.PARTNER,
            partner_id=batch.partner_id,
            batch=batch,
            external_id=self.external_id,
            methodology=self.methodology,
            subject_kind=self.subject_kind,
            subject_hash=self.subject_hash,
            subject_last4=self.subject_last4,
            occurred_at=self.occurred_at,
            data=self.data,
            status=Action.Status.RECEIVED,
        )


def parse_occurred_at(raw) -> datetime | None:
    """ISO 8601 with a time zone, or None: a well-formed string with an impossible date (`2026-13-45`) or
    offset (`+99:00`) makes `parse_datetime` raise, and must be the item's `invalid_occurred_at`, not a 500."""
    if not isinstance(raw, str) or len(raw) > 64:
        return None
    try:
        parsed = parse_datetime(raw)
    except (ValueError, OverflowError):
        return None
    if parsed is None or parsed.tzinfo is None:
        return None
    try:
        parsed.utcoffset()
    except (ValueError, OverflowError):
        return None
    return parsed


def _text_storable(value: str) -> bool:
    """PostgreSQL text holds no NUL, and UTF-8 no lone surrogate (JSON's "\\ud800"): either would fail the
    whole batch's insert (a 500) instead of the one item."""
    if "\x00" in value:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _storable(parsed: dict) -> dict:
    """Decimals are stored as decimal strings (JSON numbers would go through float on the way back)."""
    return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in parsed.items()}


def actions_ingest(*, partner: Partner, nonce: str, items: list) -> list[dict]:
    """Accept a signed partner batch: store valid new actions as `received` in this request's transaction
    (with the nonce), answer one result per item in order, and enqueue processing after commit.
    `(partner, external_id)` is unique in the database: a resubmission is `duplicate`, also when 100 copies
    arrive at once."""
    from backend.methodologies.models import Methodology

    if len(items) > MAX_ACTIONS_PER_REQUEST:
        raise ApplicationError(_("At most 1000 actions per request."), code="too_many_actions", attr="actions")
    now = timezone.now()
    codes = {i.get("methodology") for i in items if isinstance(i, dict) and isinstance(i.get("methodology"), str)}
    methodologies = {m.code: m for m in Methodology.objects.filter(code__in=codes)}
    results: list[dict | None] = [None] * len(items)
    candidates: dict[str, tuple[int, NewAction]] = {}
    for index, item in enumerate(items):
        action, error = _validate_item(item, index, partner, methodologies, now)
        external_id = item.get("external_id") if isinstance(item, dict) else None
        if error:
            results[index] = _result(external_id, "rejected", error)
        elif action.external_id in candidates:
            results[index] = _result(external_id, "duplicate")
        else:
            candidates[action.external_id] = (index, action)

    with transaction.atomic():
        partner_nonce_record(partner=partner, nonce=nonce)
        batch = IngestBatch.objects.create(partner=partner, nonce=nonce, received_at=now, submitted=len(items))
        new = [action for _index, action in candidates.values()]
        # ON CONFLICT DO NOTHING: a concurrent copy of this batch that commits first wins; ours become
        # duplicates below because they did not land in *this* batch.
        landed = _actions_insert(new, batch=batch, now=now)
        for external_id, (index, _action) in candidates.items():
            results[index] = _result(external_id, "accepted" if external_id in landed else "duplicate")
        batch.accepted = len(landed)
        batch.duplicates = sum(1 for r in results if r["status"] == "duplicate")
        batch.rejected = sum(1 for r in results if r["status"] == "rejected")
        batch.processed_at = None if landed else now  # nothing to process: not the reconciler's business
        batch.save(update_fields=["accepted", "duplicates", "rejected", "processed_at"])
        if landed:
            batch_id = batch.id
            transaction.on_commit(lambda: enqueue_batch(batch_id))
    return results


# The resident comes from the card's live binding at submission (one index probe per row, in the same
# statement): processing then leaves `resident_id` as it is, and its update stays heap-only (models.Action).
# A card bound only later is resolved by the pipeline (still NULL) or claimed (unclaimed).
ACTIONS_INSERT = """
INSERT INTO actions_action (
    source, partner_id, batch_id, external_id, methodology, subject_kind, subject_hash, subject_last4,
    occurred_at, data, status, created_at, evidence_share, grams, points, reason, breakdown, quantity,
    credited_quantity, capped_quantity, evidence, review_note, needs_review, resident_id)
SELECT 'partner', %b, %b, v.e, v.m, v.k, v.h, v.l, v.o, v.d, 'received', %b, 1, 0, 0, '', '{}', 0, 0, 0, '', '',
    false, b.resident_id
FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::timestamptz[], %b::text[]::jsonb[])
    AS v(e, m, k, h, l, o, d)
LEFT JOIN actions_subjectbinding b ON b.kind = v.k AND b.identifier_hash = v.h AND b.ended_at IS NULL
ON CONFLICT (partner_id, external_id) DO NOTHING
RETURNING external_id
"""


# The fast path: the live bindings of the batch's cards in one query, then COPY (no speculative insertion per row,
# heap rows written a page at a time). A unique violation (a resubmission, or a concurrent copy of the batch that
# committed first) rolls the COPY back to its savepoint and the batch goes through ACTIONS_INSERT, whose
# ON CONFLICT DO NOTHING sorts what landed from what was a duplicate: the unique index decides either way.
BINDINGS_LIVE = """
SELECT b.kind, b.identifier_hash, b.resident_id FROM unnest(%b::text[], %b::text[]) AS v(k, h)
JOIN actions_subjectbinding b ON b.kind = v.k AND b.identifier_hash = v.h AND b.ended_at IS NULL
"""
ACTIONS_COPY = """
COPY actions_action (
    source, partner_id, batch_id, external_id, methodology, subject_kind, subject_hash, subject_last4,
    occurred_at, data, status, created_at, evidence_share, grams, points, reason, breakdown, quantity,
    credited_quantity, capped_quantity, evidence, review_note, needs_review, resident_id) FROM STDIN
"""
BACKSLASH, COPY_NULL = "\\", "\\N"


def _copy_text(value: str) -> str:
    """A value in COPY's text format: backslash, tab, newline and carriage return escaped."""
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _actions_insert(actions: list[NewAction], *, batch: IngestBatch, now: datetime) -> set[str]:
    """Insert new partner actions; returns the external ids that landed. On PostgreSQL a COPY, falling back to one
    INSERT ... ON CONFLICT DO NOTHING with binary array parameters when some already exist (Django's bulk_create
    quotes every value in Python: most of a request's time)."""
    if not actions:
        return set()
    if connection.vendor != "postgresql":
        Action.objects.bulk_create([a.as_model(batch=batch) for a in actions], ignore_conflicts=True, batch_size=1000)
        return set(Action.objects.filter(batch=batch).values_list("external_id", flat=True))
    try:
        with transaction.atomic():  # a savepoint: a unique violation undoes the COPY alone
            _actions_copy(actions, batch=batch, now=now)
        return {a.external_id for a in actions}
    except IntegrityError:
        pass
    with BoundCursor() as cursor:
        cursor.execute(
            ACTIONS_INSERT,
            [
                batch.partner_id,
                batch.id,
                now,
                [a.external_id for a in actions],
                [a.methodology for a in actions],
                [a.subject_kind for a in actions],
                [a.subject_hash for a in actions],
                [a.subject_last4 for a in actions],
                [a.occurred_at for a in actions],
                [json.dumps(a.data) for a in actions],  # as text, cast by the server: cheaper than Jsonb
            ],
        )
        return {row[0] for row in cursor.fetchall()}


def _actions_copy(actions: list[NewAction], *, batch: IngestBatch, now: datetime) -> None:
    subjects = sorted({(a.subject_kind, a.subject_hash) for a in actions})
    with connection.wrap_database_errors, BoundCursor() as cursor:
        cursor.execute(BINDINGS_LIVE, [[k for k, _ in subjects], [h for _, h in subjects]], prepare=True)
        residents = {(kind, hashed): resident for kind, hashed, resident in cursor.fetchall()}
        head = f"partner\t{batch.partner_id}\t{batch.id}\t"
        tail = f"\treceived\t{now.isoformat()}\t1\t0\t0\t\t{{}}\t0\t0\t0\t\t\tf\t"
        lines = []
        for a in actions:
            resident = residents.get((a.subject_kind, a.subject_hash))
            # subject_kind (one of SUBJECT_KINDS) and subject_hash (hex) need no escaping; json.dumps escapes
            # control characters itself, so only its backslashes are doubled.
            lines.append(
                f"{head}{_copy_text(a.external_id)}\t{_copy_text(a.methodology)}\t{a.subject_kind}\t{a.subject_hash}\t"
                f"{_copy_text(a.subject_last4)}\t{a.occurred_at.isoformat()}\t"
                f"{json.dumps(a.data).replace(BACKSLASH, BACKSLASH * 2)}{tail}"
                f"{COPY_NULL if resident is None else resident}\n"
            )
        with cursor.copy(ACTIONS_COPY) as copy:
            copy.write("".join(lines).encode())


def enqueue_batch(batch_id: int) -> None:
    """Hand a batch to Celery. If the broker is down the actions stay `received` in PostgreSQL and the
    reconciler enqueues them later: the partner's 202 never depends on Redis."""
    from backend.actions.tasks import process_batch

    try:
        process_batch.apply_async(args=[batch_id], retry=False)
    except Exception:  # broker unreachable: nothing is lost, see actions_reconcile
        logger.warning("could not enqueue batch %s; the reconciler will pick it up", batch_id, exc_info=True)


def batch_process(*, batch_id: int) -> dict[str, int]:
    return batch_actions_process(batch_id=batch_id)


def actions_reconcile(*, older_than: timedelta = RECONCILE_AFTER, limit: int = 20_000) -> int:
    """Process actions still `received` a while after submission (broker was down, a worker died). Runs
    them here in chunks of 1,000; idempotent with any task still in flight (SKIP LOCKED + status check).
    The work is found through the batches not processed yet (no index on the actions' status: models.Action);
    a batch is closed once none of its actions is `received` any more."""
    cutoff = timezone.now() - older_than
    batches = list(
        IngestBatch.objects.filter(processed_at__isnull=True, received_at__lt=cutoff)
        .order_by("id")
        .values_list("id", flat=True)[:limit]
    )
    ids = list(
        Action.objects.filter(batch_id__in=batches, status=Action.Status.RECEIVED)
        .order_by("id")
        .values_list("id", flat=True)[:limit]
    )
    for start in range(0, len(ids), RECONCILE_CHUNK):
        chunk = ids[start : start + RECONCILE_CHUNK]
        try:
            actions_process(action_ids=chunk)
        except Exception:
            # One bad chunk (a bug no per-action isolation caught, a deadlock) must never block the chunks
            # after it, other partners' work: log it and move on; the next run retries it.
            logger.exception("reconciling actions %s..%s failed; moving on", chunk[0], chunk[-1])
    batches_close(batch_ids=batches)
    return len(ids)


def unclaimed_expire(*, now: datetime | None = None) -> int:
    """Unclaimed partner records are kept 30 days for a late binding, then deleted (data minimisation)."""
    cutoff = (now or timezone.now()) - UNCLAIMED_RETENTION
    # resident IS NULL: through the partial index of unbound actions (there is no index on status).
    stale = Action.objects.filter(resident__isnull=True, status=Action.Status.UNCLAIMED, occurred_at__lt=cutoff)
    ActionStatusChange.objects.filter(action__in=stale).delete()
    deleted, _ = stale.delete()
    return deleted


# --- bindings: partner-attested linking lives in links.py (binding_create re-exported for callers) ---------


def actions_erase_personal_data(*, user, context: dict | None = None) -> None:
    """PIPL erasure step (see backend/accounts/erasure.py for what is left, column by column): pending
    self-reports and flagged actions are withdrawn (pending credit reversed, cap given back); cards are unbound;
    evidence photos deleted; every action keeps only what aggregates need (methodology, version, grams, points,
    quantities, the Asia/Shanghai day) and loses its data, subject, partner record id, notes and exact times."""
    from backend.core.crypto import keyed_hash

    waiting = list(
        Action.objects.select_for_update()
        .filter(resident=user, status__in=[Action.Status.PENDING_REVIEW, Action.Status.FLAGGED])
        .order_by("id")
    )
    history_materialize([action.id for action in waiting])
    _pending_credits_undo(waiting, reason="Withdrawn: the resident deleted the account")
    for action in waiting:
        action.status = Action.Status.REJECTED
        action.needs_review = False
        action.reason = "withdrawn_erasure"
        action.save(update_fields=["status", "needs_review", "reason", "grams", "points"])
        ActionStatusChange.objects.create(action=action, status=action.status, reason=action.reason)
    SubjectBinding.objects.filter(resident=user).delete()
    LinkCode.objects.filter(resident=user).delete()
    PeriodClaim.objects.filter(resident=user).delete()
    with_evidence = Action.objects.filter(resident=user).exclude(evidence="")
    for action in with_evidence.only("id", "evidence"):
        action.evidence.delete(save=False)
    stripped = []
    for action in Action.objects.filter(resident=user).order_by("id"):
        stripped.append(action)
        action.data = {}
        action.breakdown = {}
        action.subject_hash = ""
        action.subject_last4 = ""
        action.evidence = ""
        action.review_note = ""
        if action.external_id and not action.external_id.startswith("erased:"):
            action.external_id = "erased:" + keyed_hash(f"erased-external-id:{action.partner_id}", action.external_id)
        for name in ("occurred_at", "created_at", "processed_at", "reviewed_at"):
            if getattr(action, name) is not None:
                setattr(action, name, _local_day_start(getattr(action, name)))
    Action.objects.bulk_update(stripped, ERASED_ACTION_FIELDS, batch_size=500)
    history = list(ActionStatusChange.objects.filter(action__resident=user).only("id", "at"))
    for change in history:
        change.note, change.at = "", _local_day_start(change.at)
    ActionStatusChange.objects.bulk_update(history, ["note", "at"], batch_size=500)


ERASED_ACTION_FIELDS = [
    "data",
    "breakdown",
    "subject_hash",
    "subject_last4",
    "evidence",
    "review_note",
    "external_id",
    "occurred_at",
    "created_at",
    "processed_at",
    "reviewed_at",
]


def _local_day_start(moment: datetime) -> datetime:
    from backend.core.days import SHANGHAI

    return moment.astimezone(SHANGHAI).replace(hour=0, minute=0, second=0, microsecond=0)


# --- self-reports and review ------------------------------------------------------------------------------

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAX_EVIDENCE_BYTES = 5 * 1024 * 1024
MAX_EVIDENCE_PIXELS = 40_000_000  # a 5 MB PNG can still decompress to gigabytes: bound the pixels too
JPEG_QUALITY = 85


def evidence_too_large() -> ApplicationError:
    return ApplicationError(_("Evidence must be at most 5 MB."), code="evidence_too_large", attr="evidence")


def _evidence_type_invalid() -> ApplicationError:
    return ApplicationError(_("Evidence must be a JPEG or PNG image."), code="evidence_type_invalid", attr="evidence")


def evidence_check(upload) -> ContentFile:
    """JPEG or PNG up to 5 MB, the type decided by the file's content, not its name or declared type; then
    decoded and re-encoded with Pillow, so what is stored is pixels only: a polyglot (JPEG+HTML, PNG+PHP), EXIF
    (GPS position) and trailing bytes are dropped. Returns the new file, named evidence.jpg / evidence.png."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if upload.size > MAX_EVIDENCE_BYTES:
        raise evidence_too_large()
    head = upload.read(16)
    upload.seek(0)
    if head.startswith(JPEG_MAGIC):
        kind, extension = "JPEG", "jpg"
    elif head.startswith(PNG_MAGIC):
        kind, extension = "PNG", "png"
    else:
        raise _evidence_type_invalid()
    try:
        with Image.open(upload, formats=[kind]) as image:
            width, height = image.size
            if width * height > MAX_EVIDENCE_PIXELS:
                raise evidence_too_large()
            image.load()
            clean = ImageOps.exif_transpose(image)
            if kind == "JPEG":
                clean = clean.convert("RGB")
            elif clean.mode not in ("RGB", "RGBA", "L", "LA"):
                clean = clean.convert("RGBA")
            out = io.BytesIO()
            clean.save(out, format=kind, **({"quality": JPEG_QUALITY} if kind == "JPEG" else {"optimize": True}))
    except ApplicationError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise _evidence_type_invalid() from None
    return ContentFile(out.getvalue(), name=f"evidence.{extension}")


def self_report_create(*, resident, methodology_code: str, occurred_at: datetime, data: dict, evidence) -> Action:
    """A resident reports an action with photo evidence. It goes through the same rules and caps and waits
    for a reviewer as `pending_review` with a pending credit at the self-report share."""
    from backend.methodologies import engine, selectors
    from backend.methodologies.models import Methodology

    methodology = Methodology.objects.filter(code=methodology_code).first()
    if methodology is None:
        raise ApplicationError(_("Unknown methodology."), code="unknown_methodology", attr="methodology")
    version = selectors.version_at(
        selectors.versions_applicable([methodology_code]).get(methodology_code, []), occurred_at
    )
    if version is None or not version.self_report_allowed:
        raise ApplicationError(
            _("This methodology cannot be self-reported."), code="self_report_not_allowed", attr="methodology"
        )
    now = timezone.now()
    if occurred_at > now + FUTURE_TOLERANCE:
        raise ApplicationError(_("occurred_at is in the future."), code="occurred_in_future", attr="occurred_at")
    if occurred_at < now - MAX_AGE:
        raise ApplicationError(_("Actions older than 7 days are not accepted."), code="too_old", attr="occurred_at")
    try:
        parsed = engine.parse_action_data(methodology, data)
    except engine.ActionDataInvalid as exc:
        raise ApplicationError(exc.detail, code="invalid_data", attr=f"data.{exc.field}") from None
    evidence = evidence_check(evidence)
    with transaction.atomic():
        action = Action.objects.create(
            source=Action.Source.SELF_REPORT,
            resident=resident,
            methodology=methodology_code,
            occurred_at=occurred_at,
            data=_storable(parsed),
            evidence=evidence,
            status=Action.Status.RECEIVED,
        )
        actions_process(action_ids=[action.id])
    action.refresh_from_db()
    return action


def _review_target(action_id: int) -> Action:
    action = Action.objects.select_for_update().filter(pk=action_id).first()
    if action is None:
        raise ApplicationError(_("No such action."), code="not_found", status_code=404)
    if action.status not in (Action.Status.FLAGGED, Action.Status.PENDING_REVIEW):
        raise ConflictError(_("This action is not waiting for review."), code="action_not_reviewable")
    return action


@transaction.atomic
def review_approve(*, action_id: int, reviewer, note: str = "") -> Action:
    """Approve a flagged or self-reported action: its pending credit becomes spendable."""
    from backend.ledger.services import pending_credit_release

    action = _review_target(action_id)
    if action.resident_id == reviewer.id:
        raise ApplicationError(_("You cannot review your own action."), code="review_own_action", status_code=403)
    if has_credit(action.status, action.grams, action.points):
        pending_credit_release(idempotency_key=f"action:{action.id}")
    return _reviewed(action, Action.Status.CREDITED, reviewer, note, "approved")


@transaction.atomic
def review_reject(*, action_id: int, reviewer, note: str = "") -> Action:
    """Reject a flagged or self-reported action: its pending credit is reversed and the daily cap it used is
    given back."""
    action = _review_target(action_id)
    if action.resident_id == reviewer.id:
        raise ApplicationError(_("You cannot review your own action."), code="review_own_action", status_code=403)
    _pending_credits_undo([action], reason=f"Review rejected: {note}"[:200])
    return _reviewed(action, Action.Status.REJECTED, reviewer, note, "review_rejected")


def _pending_credits_undo(actions: list[Action], *, reason: str) -> None:
    """Reverse waiting actions' pending credits and give back the daily cap they used (grams, points -> 0).

    Every cap row first, in the pipeline's order (resident, methodology, day), and only then the ledger
    accounts: a self-report holds its cap row while it posts its credit, so taking an account before a cap row
    deadlocks with it. That was the order for one action (a rejection, tests/actions/test_lock_order.py) and,
    for an erasure withdrawing several, between one action's accounts and the next action's cap row."""
    from backend.actions.pipeline import cap_usage_release, shanghai_day
    from backend.ledger.services import pending_credit_reverse

    def cap_row(action: Action) -> tuple:
        return action.resident_id, action.methodology, shanghai_day(action.occurred_at)

    for action in sorted((a for a in actions if a.credited_quantity), key=lambda a: (*cap_row(a), a.id)):
        resident_id, methodology, day = cap_row(action)
        cap_usage_release(
            action_id=action.id,
            resident_id=resident_id,
            methodology=methodology,
            day=day,
            quantity=action.credited_quantity,
        )
    for action in actions:
        if has_credit(action.status, action.grams, action.points):
            pending_credit_reverse(idempotency_key=f"action:{action.id}", reason=reason)
    claims_release(action_ids=[action.id for action in actions])  # a serial, month or trip they held is free
    for action in actions:
        action.grams = 0
        action.points = 0


def _reviewed(action: Action, status: str, reviewer, note: str, reason: str) -> Action:
    history_materialize([action.id])
    action.status = status
    action.needs_review = False
    action.reviewed_by = reviewer
    action.reviewed_at = timezone.now()
    action.review_note = note
    action.reason = reason
    fields = ["status", "needs_review", "reviewed_by", "reviewed_at", "review_note", "reason", "grams", "points"]
    action.save(update_fields=fields)
    ActionStatusChange.objects.create(action=action, status=status, reason=reason, note=note, actor=reviewer)
    return action
