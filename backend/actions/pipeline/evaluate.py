"""Step 1-3 of the flow, reads only: who the action belongs to, which methodology version prices it, whether
its data and the version's validity rules (then the history rules, see rules.py) let it through."""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ObjectDoesNotExist
from django.db import connection
from django.db.models import Q

from backend.actions.models import Action, SubjectBinding
from backend.actions.pipeline import rules
from backend.actions.pipeline.common import ActionRow, Outcome, each_isolated, isolated, live
from backend.core.bulk import BoundCursor
from backend.core.days import local_day


def evaluate(actions: list[ActionRow]) -> list[Outcome]:
    from backend.methodologies import engine, selectors
    from backend.methodologies.models import Methodology

    outcomes = [Outcome(action=a) for a in actions]
    _resolve_residents(outcomes)
    candidates = live(outcomes)

    methodologies = {m.code: m for m in Methodology.objects.filter(code__in={o.action.methodology for o in candidates})}
    versions = selectors.versions_applicable(methodologies.keys())
    policies = _PolicyTimeline()
    for o in candidates:
        methodology = methodologies.get(o.action.methodology)
        o.version = selectors.version_at(versions.get(o.action.methodology, []), o.action.occurred_at)
        if methodology is None or o.version is None:
            o.reject("no_methodology_version")
            continue
        with isolated(o):
            _check_one(o, methodology, policies, engine)

    for rule, check in rules.HISTORY_RULES.items():
        each_isolated(check, [o for o in live(outcomes) if o.rules.get(rule)])
    each_isolated(rules.double_claims, live(outcomes))
    for o in live(outcomes):
        if o.action.source == Action.Source.SELF_REPORT:
            o.status = Action.Status.PENDING_REVIEW
    for o in outcomes:
        if o.version is not None and o.status != Action.Status.REJECTED:
            with isolated(o):
                o.quantity = engine.cap_quantity(o.version, o.parsed)
                o.credited_quantity = o.quantity
    return outcomes


def _check_one(o: Outcome, methodology, policies: _PolicyTimeline, engine) -> None:
    action = o.action
    try:
        o.parsed = engine.parse_action_data(methodology, action.data)
    except engine.ActionDataInvalid as exc:
        # Outside a field's bounds (stored before the bounds, or a submission bug) is an implausible amount.
        o.reject(engine.IMPLAUSIBLE if exc.code == engine.OUT_OF_RANGE else f"invalid_data:{exc.field}"[:64])
        return
    reason = engine.check_validity(o.version, o.parsed)
    if reason:
        o.reject(reason)
        return
    if action.source == Action.Source.SELF_REPORT and not o.version.self_report_allowed:
        o.reject("self_report_not_allowed")
        return
    o.trip = rules.trip_interval(action, o.parsed)
    o.policy = policies.at(action.occurred_at)


def _resolve_residents(outcomes: list[Outcome]) -> None:
    unresolved = [o for o in outcomes if o.action.resident_id is None]
    if unresolved:
        owner = _live_owners({(o.action.subject_kind, o.action.subject_hash) for o in unresolved})
        for o in unresolved:
            resident = owner.get((o.action.subject_kind, o.action.subject_hash))
            if resident is None:
                o.status, o.reason = Action.Status.UNCLAIMED, "subject_not_bound"
            else:
                o.action.resident_id = resident
    partner_residents = {
        o.action.resident_id for o in outcomes if o.action.resident_id and o.action.source == Action.Source.PARTNER
    }
    consenting = _consenting(partner_residents)
    for o in outcomes:
        if (
            o.status == Action.Status.CREDITED
            and o.action.source == Action.Source.PARTNER
            and o.action.resident_id not in consenting
        ):
            o.reject("consent_missing")


# Raw SQL with array parameters on PostgreSQL: the ORM spends milliseconds building IN lists of 1,000 values.
LIVE_OWNERS = """
SELECT b.kind, b.identifier_hash, b.resident_id FROM actions_subjectbinding b
JOIN unnest(%b::text[], %b::text[]) AS k(kind, h) ON b.kind = k.kind AND b.identifier_hash = k.h
WHERE b.ended_at IS NULL
"""
CONSENTING = """
SELECT DISTINCT c.user_id FROM accounts_consent c JOIN accounts_user u ON u.id = c.user_id
WHERE c.user_id = ANY(%b::bigint[]) AND c.kind = %b AND c.withdrawn_at IS NULL AND u.is_active
"""


def _live_owners(keys: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """(kind, identifier hash) -> resident of the live binding."""
    if connection.vendor != "postgresql":
        bindings = (
            SubjectBinding.objects.live()
            .filter(subject_kind_hash_q(keys))
            .values_list("kind", "identifier_hash", "resident_id")
        )
        return {(kind, h): resident for kind, h, resident in bindings}
    ordered = sorted(keys)
    with BoundCursor() as cursor:
        cursor.execute(LIVE_OWNERS, [[k for k, _ in ordered], [h for _, h in ordered]])
        return {(kind, h): resident for kind, h, resident in cursor.fetchall()}


def _consenting(residents: set[int]) -> set[int]:
    """Active residents with a live partner-data consent."""
    from backend.accounts.models import Consent

    if not residents:
        return set()
    if connection.vendor != "postgresql":
        return set(
            Consent.objects.filter(
                user_id__in=residents,
                kind=Consent.Kind.PARTNER_DATA,
                withdrawn_at__isnull=True,
                user__is_active=True,
            ).values_list("user_id", flat=True)
        )
    with BoundCursor() as cursor:
        cursor.execute(CONSENTING, [list(residents), str(Consent.Kind.PARTNER_DATA)])
        return {row[0] for row in cursor.fetchall()}


def subject_kind_hash_q(keys) -> Q:
    kinds = {k for k, _ in keys}
    hashes = {h for _, h in keys}
    return Q(kind__in=kinds, identifier_hash__in=hashes)


class _PolicyTimeline:
    """Points policy versions in force, loaded once per batch (a batch spans a few days at most)."""

    def __init__(self):
        from backend.methodologies import selectors

        self._selectors = selectors
        self._cache: dict = {}

    def at(self, at: datetime):
        day = local_day(at)
        cached = self._cache.get(day)
        if day in self._cache and (cached is None or _in_force(cached, at)):
            return cached
        try:
            policy = self._selectors.points_policy_at(at)
        except ObjectDoesNotExist:  # no points policy in force then: grams are credited, points are not
            policy = None
        self._cache[day] = policy
        return policy


def _in_force(version, at: datetime) -> bool:
    return version.effective_from <= at and (version.effective_to is None or at < version.effective_to)
