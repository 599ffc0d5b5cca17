"""Partner-attested card and account linking (issue 11). A resident never binds a card by typing its number:

1. the resident asks for a one-time link code (`link_code_create`, POST /me/link-codes);
2. types it into the partner's own app, where the card is already registered to them;
3. the partner confirms it with a signed request (`link_confirm`, POST /partner/links): the card is bound to
   the code's resident and its unclaimed actions of the last 7 days are claimed and processed now.

The partner is the authority on who holds a card: linking a card bound to someone else moves the binding
(the old one ends with `ended_at`; what it earned stays; an action is only ever claimed while unclaimed).
One live binding per card is a partial unique index."""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from rest_framework import status

from backend.actions.history import history_materialize
from backend.actions.models import Action, IngestBatch, LinkCode, SubjectBinding, SubjectKind
from backend.actions.pipeline import actions_process
from backend.actions.subjects import normalize_identifier, subject_hash, subject_last4
from backend.core.crypto import keyed_hash
from backend.core.errors import ApplicationError

# No look-alikes: no 0/O, 1/I/L, 2/Z, 5/S, 8/B. 25 symbols ^ 8 = 1.5e11 codes, at most 5 live per resident,
# each valid 10 minutes, guessed only through signed, rate-limited partner requests.
LINK_CODE_ALPHABET = "ACDEFGHJKMNPQRTUVWXY34679"
LINK_CODE_LENGTH = 8
LINK_CODE_TTL = timedelta(minutes=10)
MAX_LIVE_LINK_CODES = 5
CLAIM_WINDOW = timedelta(days=7)  # Beijing MaaS practice: a 7-day claim window


def _code_hash(code: str) -> str:
    return keyed_hash("link_code", code)


def _normalize_code(code: str) -> str:
    return "".join(ch for ch in str(code).upper() if ch not in " -")


def _check_kind(kind: str) -> None:
    if kind not in SubjectKind.values:
        raise ApplicationError(
            _("kind must be one of: %s.") % ", ".join(SubjectKind.values), code="invalid_subject", attr="kind"
        )


@transaction.atomic
def link_code_create(*, resident, kind: str) -> tuple[LinkCode, str]:
    """A new one-time link code for `kind`; returns the row and the code in clear (shown once, stored hashed).
    At most 5 live codes per resident: the resident's row is locked, so 50 requests at once make 5 codes."""
    from django.contrib.auth import get_user_model

    _check_kind(kind)
    get_user_model().objects.select_for_update().filter(pk=resident.pk).first()
    now = timezone.now()
    live = LinkCode.objects.filter(resident=resident, used_at__isnull=True, expires_at__gt=now).count()
    if live >= MAX_LIVE_LINK_CODES:
        raise ApplicationError(
            _("At most %(n)s link codes may be open at once; use one or wait 10 minutes.") % {"n": MAX_LIVE_LINK_CODES},
            code="too_many_link_codes",
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
        )
    for _attempt in range(5):
        code = "".join(secrets.choice(LINK_CODE_ALPHABET) for _ in range(LINK_CODE_LENGTH))
        try:
            with transaction.atomic():
                row = LinkCode.objects.create(
                    resident=resident,
                    kind=kind,
                    code_hash=_code_hash(code),
                    created_at=now,
                    expires_at=now + LINK_CODE_TTL,
                )
            return row, code
        except IntegrityError:  # the same code issued before (hash unique): draw again
            continue
    raise ApplicationError(_("Could not issue a link code; try again."), code="link_code_unavailable", status_code=503)


def _invalid_code() -> ApplicationError:
    # Unknown, expired and used codes get one answer: nothing about other residents' codes leaks.
    return ApplicationError(_("This link code is not valid."), code="link_code_invalid", attr="code", status_code=404)


def _check_partner_kind(partner, kind: str) -> None:
    _check_kind(kind)
    if kind not in (partner.subject_kinds or []):
        raise ApplicationError(
            _("This partner does not link %(kind)s subjects.") % {"kind": kind},
            code="subject_kind_not_allowed",
            attr="subject.kind",
            status_code=status.HTTP_403_FORBIDDEN,
        )


def link_confirm(*, partner, nonce: str, code: str, kind: str, identifier: str) -> tuple[SubjectBinding, dict]:
    """The partner attests that the holder of `identifier` typed `code` in its app: bind the card to the
    code's resident (moving it from anyone else), then claim and process its unclaimed actions."""
    from backend.partners.services import partner_nonce_record

    _check_partner_kind(partner, kind)
    if not normalize_identifier(identifier) or len(str(identifier)) > 128:
        raise ApplicationError(_("subject.identifier is required."), code="invalid_subject", attr="subject.identifier")
    with transaction.atomic():
        partner_nonce_record(partner=partner, nonce=nonce)
        now = timezone.now()
        # The row lock makes the code single-use under concurrency: a second confirmation waits, then finds
        # `used_at` set (PostgreSQL re-checks the WHERE on the locked row) and gets the same 404.
        link = (
            LinkCode.objects.select_for_update()
            .select_related("resident")
            .filter(code_hash=_code_hash(_normalize_code(code)), used_at__isnull=True, expires_at__gt=now)
            .first()
        )
        if link is None:
            raise _invalid_code()
        if link.kind != kind:
            raise ApplicationError(
                _("This code was issued for %(kind)s.") % {"kind": link.kind},
                code="subject_kind_mismatch",
                attr="subject.kind",
            )
        binding, claimable = _bind(resident=link.resident, kind=kind, identifier=identifier, partner=partner)
        link.used_at, link.used_by, link.binding = now, partner, binding
        link.save(update_fields=["used_at", "used_by", "binding"])
    counts = actions_process(action_ids=claimable) if claimable else {}
    return binding, counts


def binding_create(*, resident, kind: str, identifier: str, partner=None) -> tuple[SubjectBinding, dict[str, int]]:
    """Bind a card/account to the resident on a partner's word (link_confirm, or operators' tooling) and
    process its unclaimed actions of the last 7 days. Never reachable from a resident's own request."""
    _check_kind(kind)
    if not normalize_identifier(identifier):
        raise ApplicationError(_("identifier is required."), code="invalid_subject", attr="identifier")
    with transaction.atomic():
        binding, claimable = _bind(resident=resident, kind=kind, identifier=identifier, partner=partner)
    counts = actions_process(action_ids=claimable) if claimable else {}
    return binding, counts


def _bind(*, resident, kind: str, identifier: str, partner) -> tuple[SubjectBinding, list[int]]:
    hashed = subject_hash(kind, identifier)
    for _attempt in range(3):
        try:
            with transaction.atomic():
                binding = _bind_once(
                    resident=resident, kind=kind, hashed=hashed, identifier=identifier, partner=partner
                )
            break
        except IntegrityError:
            # Another link of the same card committed between our read and insert (the partial unique index
            # said so): read again and move it; the partner's latest word wins.
            continue
    else:
        raise ApplicationError(
            _("The card is being linked elsewhere; try again."), code="link_conflict", status_code=409
        )
    claimable = list(
        Action.objects.select_for_update()
        .filter(
            resident__isnull=True,  # the partial index of unbound actions (no index on status)
            status=Action.Status.UNCLAIMED,
            subject_kind=kind,
            subject_hash=hashed,
            occurred_at__gte=timezone.now() - CLAIM_WINDOW,
        )
        .values_list("id", flat=True)
    )
    history_materialize(claimable)  # their `unclaimed` outcome stays in the history
    Action.objects.filter(id__in=claimable).update(status=Action.Status.RECEIVED, reason="")
    # Their batches are open again, so the reconciler finds them if their processing is never enqueued.
    IngestBatch.objects.filter(id__in=Action.objects.filter(id__in=claimable).values("batch_id")).update(
        processed_at=None
    )
    return binding, claimable


def _bind_once(*, resident, kind, hashed, identifier, partner) -> SubjectBinding:
    current = SubjectBinding.objects.live().select_for_update().filter(kind=kind, identifier_hash=hashed).first()
    if current is not None and current.resident_id == resident.id:
        return current
    if current is not None:
        _end(current, SubjectBinding.EndReason.MOVED)
    return SubjectBinding.objects.create(
        resident=resident,
        kind=kind,
        identifier_hash=hashed,
        identifier_last4=subject_last4(identifier),
        partner=partner,
    )


def _end(binding: SubjectBinding, reason: str) -> None:
    binding.ended_at = timezone.now()
    binding.end_reason = reason
    binding.save(update_fields=["ended_at", "end_reason"])


def link_end(*, partner, nonce: str, kind: str, identifier: str) -> None:
    """The partner ends the live binding of a card (lost, account closed). Credits already earned stay."""
    from backend.partners.services import partner_nonce_record

    _check_partner_kind(partner, kind)
    with transaction.atomic():
        partner_nonce_record(partner=partner, nonce=nonce)
        binding = (
            SubjectBinding.objects.live()
            .select_for_update()
            .filter(kind=kind, identifier_hash=subject_hash(kind, str(identifier)))
            .first()
        )
        if binding is None:
            raise ApplicationError(_("No live binding for this subject."), code="not_found", status_code=404)
        _end(binding, SubjectBinding.EndReason.PARTNER_ENDED)


@transaction.atomic
def binding_unlink(*, resident, binding_id: int) -> None:
    """The resident unlinks one of their own live bindings; another resident's id is the same 404."""
    binding = SubjectBinding.objects.live().select_for_update().filter(pk=binding_id, resident=resident).first()
    if binding is None:
        raise ApplicationError(_("No such binding."), code="not_found", status_code=404)
    _end(binding, SubjectBinding.EndReason.RESIDENT_UNLINKED)
