"""Erasure is complete: every model with a foreign key to the user is declared in backend/accounts/erasure.py,
and after DELETE /api/v1/me each of its columns holds exactly what the declaration says."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from django.apps import apps
from django.conf import settings as django_settings
from django.contrib.auth.models import Group
from django.utils import timezone

from backend.accounts.erasure import ERASURE_LEAVES, STAFF_RECORD
from backend.accounts.models import Consent
from backend.accounts.services import consent_set
from backend.actions.models import Action, SubjectBinding
from backend.actions.subjects import subject_hash, subject_last4
from tests.actions.helpers import ride, signed_post
from tests.actions.test_self_report import post_report, self_report_methodology
from tests.conftest import PASSWORD, client_for

SHANGHAI = ZoneInfo("Asia/Shanghai")
USER_ROW = "(the user row)"


def user_model():
    return apps.get_model(django_settings.AUTH_USER_MODEL)


def foreign_keys_to_user() -> dict[str, tuple[type, list]]:
    """label -> (model, [foreign keys to the user]) for every installed model, auto-created M2M tables too."""
    found = {}
    for model in apps.get_models(include_auto_created=True):
        fks = [f for f in model._meta.concrete_fields if f.is_relation and f.related_model is user_model()]
        if fks:
            found[model._meta.label] = (model, fks)
    return found


def test_every_foreign_key_to_the_user_declares_what_erasure_leaves():
    problems = []
    walked = foreign_keys_to_user()
    for label, (model, fks) in walked.items():
        declared = ERASURE_LEAVES.get(label)
        if declared is None:
            problems.append(
                f"{label} has a foreign key to the user ({', '.join(f.name for f in fks)}) but "
                "backend/accounts/erasure.py ERASURE_LEAVES does not declare what erasure leaves of it: add an "
                "entry (and an erasure step in ERASURE_STEPS if it holds personal data)."
            )
            continue
        for fk in fks:
            entry = declared.get(fk.name)
            if entry is None:
                problems.append(f"{label}.{fk.name} points at the user but is not declared in ERASURE_LEAVES.")
                continue
            if entry == STAFF_RECORD or entry["rows"] == "deleted":
                continue
            columns = {f.name for f in model._meta.concrete_fields}
            if set(entry["columns"]) != columns:
                problems.append(
                    f"{label} via {fk.name}: columns not declared {sorted(columns - set(entry['columns']))}, "
                    f"declared but gone {sorted(set(entry['columns']) - columns)}."
                )
        stale = set(declared) - {f.name for f in fks}
        if stale:
            problems.append(
                f"{label}: ERASURE_LEAVES declares {sorted(stale)}, which are not foreign keys to the user."
            )
    for label in set(ERASURE_LEAVES) - set(walked) - {user_model()._meta.label}:
        problems.append(f"ERASURE_LEAVES declares {label}, which has no foreign key to the user.")
    user_columns = {f.name for f in user_model()._meta.concrete_fields}
    if set(ERASURE_LEAVES[user_model()._meta.label][USER_ROW]["columns"]) != user_columns:
        problems.append(f"The user row's columns are {sorted(user_columns)}: declare each of them.")
    assert not problems, "\n".join(problems)


def snapshot(user) -> dict:
    """Every row that points at the user, by (label, foreign key), as {pk: {column name: value}}."""
    rows = {}
    user_fields = user_model()._meta.concrete_fields
    rows[(user_model()._meta.label, USER_ROW)] = {
        user.pk: {f.name: getattr(user_model().objects.get(pk=user.pk), f.attname) for f in user_fields}
    }
    for label, (model, fks) in foreign_keys_to_user().items():
        for fk in fks:
            fields = model._meta.concrete_fields
            rows[(label, fk.name)] = {
                obj.pk: {f.name: getattr(obj, f.attname) for f in fields}
                for obj in model.objects.filter(**{fk.attname: user.pk})
            }
    return rows


def local_day(value: datetime) -> datetime:
    return value.astimezone(SHANGHAI).replace(hour=0, minute=0, second=0, microsecond=0)


def check(rule, before, after, *, row_before: dict, consented: bool, erased_from: datetime) -> bool:
    was_pending = row_before.get("status") in ("pending_review", "flagged")
    match rule.rule:
        case "kept":
            return after == before
        case "cleared":
            return after in (None, "", {}, [])
        case "set":
            return after == rule.value
        case "set_at_erasure":
            return after == before if before is not None else after is not None and after >= erased_from
        case "local_day":
            return after == (None if before is None else local_day(before))
        case "month":
            return after == local_day(before).replace(day=1)
        case "pseudonymised":
            return (before is None and after is None) or (after != before and before not in after)
        case "statistics_consent":
            return after == before if consented else after in (None, "")
        case "released_if_reserved":
            return after == ("released" if row_before.get("status") == "reserved" else before)
        case "released_at_if_reserved":
            if row_before.get("status") == "reserved":
                return after is not None and after >= erased_from
            return after == before
        case "release_reason_if_reserved":
            return after == ("account_erased" if row_before.get("status") == "reserved" else before)
        case "cancelled_if_issued":
            return after == ("cancelled" if row_before.get("status") == "issued" else before)
        case "closed_at_erasure_if_issued":
            if row_before.get("status") == "issued":
                return after is not None and after >= erased_from
            return after == before
        case "unusable_password":
            return isinstance(after, str) and after.startswith("!")
        case "withdrawn_if_pending":
            return after == ("rejected" if was_pending else before)
        case "zero_if_withdrawn":
            return after == (0 if was_pending else before)
        case "false_if_withdrawn":
            return after == (False if was_pending else before)
        case "withdrawn_reason":
            return after == ("withdrawn_erasure" if was_pending else before)
        case "cap_given_back":
            return 0 <= after <= before
        case "reservations_given_back":
            return after.keys() == before.keys() and all(after[k] in (before[k], "0") for k in after)
    raise AssertionError(f"unknown rule {rule.rule}")


@pytest.mark.django_db
@pytest.mark.parametrize("statistics_consent", [True, False])
def test_erasure_leaves_exactly_what_is_declared(api, partner, make_user, settings, tmp_path, statistics_consent):
    # Given a resident with a life on the platform
    settings.MEDIA_ROOT = tmp_path
    resident = make_user(district="370212")
    if statistics_consent:
        consent_set(user=resident, kind=Consent.Kind.STATISTICS, granted=True)
    assert (
        api.post("/api/v1/auth/token", {"phone": resident.raw_phone, "password": PASSWORD}, format="json").status_code
        == 200
    )
    resident.groups.add(Group.objects.create(name=f"g-{resident.pk}"))
    card = f"CARD-{resident.pk:08d}"
    SubjectBinding.objects.create(
        resident=resident,
        kind="transit_card",
        identifier_hash=subject_hash("transit_card", card),
        identifier_last4=subject_last4(card),
    )
    response = signed_post(
        api, partner.pk, partner.secret, {"actions": [ride(f"erase-{resident.pk}", identifier=card)]}
    )
    assert response.status_code == 202, response.json()
    credited = Action.objects.get(resident=resident, source="partner")
    assert credited.status == "credited" and credited.subject_hash and credited.data
    report = post_report(client_for(resident), self_report_methodology())
    assert report.status_code == 201, report.json()
    pending = Action.objects.get(pk=report.json()["id"])
    # pending review, or flagged when its time overlaps the partner's ride: both wait for a reviewer
    assert pending.status in ("pending_review", "flagged") and pending.evidence
    evidence_path = pending.evidence.path
    client = client_for(resident)
    before = snapshot(resident)
    erased_from = timezone.now()

    # When the resident erases the account
    assert client.delete("/api/v1/me").status_code == 204

    # Then every row that pointed at the user holds what ERASURE_LEAVES declares, column by column
    after = snapshot(resident)
    problems = []
    for (label, fk), rows in before.items():
        entry = ERASURE_LEAVES[label][fk]
        if entry == STAFF_RECORD:
            assert after[(label, fk)] == rows, f"{label}.{fk} is a staff record and must stay as it was"
            continue
        if entry["rows"] == "deleted":
            assert not after[(label, fk)], f"{label} rows via {fk} must be deleted"
            continue
        assert set(after[(label, fk)]) == set(rows), f"{label} rows via {fk} must all stay"
        for pk, row in rows.items():
            for column, rule in entry["columns"].items():
                value = after[(label, fk)][pk][column]
                if not check(
                    rule, row[column], value, row_before=row, consented=statistics_consent, erased_from=erased_from
                ):
                    problems.append(f"{label}#{pk}.{column}: {rule.rule}, was {row[column]!r}, now {value!r}")
    assert not problems, "\n".join(problems)
    # The rows of the scenario were really there (the walk would prove nothing on empty tables).
    assert before[("actions.Action", "resident")] and before[("actions.SubjectBinding", "resident")]
    assert before[("accounts.User_groups", "user")] and before[("token_blacklist.OutstandingToken", "user")]
    # The pending self-report is withdrawn: not waiting for a reviewer, its photo deleted from storage.
    reviewer = client_for(make_user(role="reviewer"))
    queue = reviewer.get("/api/v1/admin/reviews").json()["results"]
    assert pending.pk not in [item["id"] for item in queue]
    import os

    assert not os.path.exists(evidence_path)
    wallet_pending = Action.objects.get(pk=pending.pk)
    assert (wallet_pending.status, wallet_pending.grams, wallet_pending.points) == ("rejected", 0, 0)
