"""The quick-start demo seeded by `make run` (`manage.py seed --demo`; opt out with SEED_DEMO=0).

Everything goes through the real services, as a partner and its residents would: a partner (its secret printed),
two residents who register and link a card through the partner-attested link flow, a week of rides pushed as
partner batches and credited by the pipeline, a reviewer and an admin, and the Merkle roots of the week's
finished days. Idempotent: a second run finds everything in place and changes nothing (rides keep their
external ids, so the pipeline never credits one twice). Development data only: the passwords are public."""

import uuid
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

from django.db import transaction
from django.utils import timezone

from backend.accounts.models import User
from backend.accounts.phones import normalize_phone, phone_hash
from backend.core.crypto import decrypt

DEMO_PASSWORD = "Qingdao-demo-2026"
PARTNER_NAME = "青岛公交 Qingdao Transit (demo)"
PARTNER_METHODOLOGIES = ["bus_ride", "metro_ride", "bike_ride"]
PARTNER_KINDS = ["transit_card", "metro_card", "bike_account"]
DAYS = 7  # partners may push actions up to 7 days old

# phone, role, display name, district, (card kind, card number, methodology, ride data) for residents
PEOPLE = [
    (
        "13800000001",
        User.Role.RESIDENT,
        "小青 Xiaoqing (demo)",
        "370202",
        ("transit_card", "DEMO-QDT-0001", "bus_ride", {"distance_km": "8.5", "duration_s": 1500}),
    ),
    (
        "13800000002",
        User.Role.RESIDENT,
        "小岛 Xiaodao (demo)",
        "370212",
        (
            "metro_card",
            "DEMO-METRO-0002",
            "metro_ride",
            {"distance_km": "14", "duration_s": 1800, "entry_station": "五四广场", "exit_station": "青岛北站"},
        ),
    ),
    ("13800000003", User.Role.REVIEWER, "审核员 Reviewer (demo)", None, None),
    ("13800000004", User.Role.ADMIN, "管理员 Admin (demo)", None, None),
]
RIDE_TIMES = (time(8, 10), time(18, 20))  # Asia/Shanghai: to work and back


@dataclass
class DemoReport:
    created: list[str] = field(default_factory=list)
    partner_id: int | None = None
    partner_secret: str = ""
    rides_accepted: int = 0
    rides_credited: int = 0
    roots_computed: int = 0
    people: list[tuple[str, str, str]] = field(default_factory=list)  # (role, phone, display name)

    def lines(self) -> list[str]:
        done = f"created {', '.join(self.created)}" if self.created else "already in place, nothing created"
        out = [f"demo: {done}"]
        out.append(f"demo partner id {self.partner_id}, secret {self.partner_secret} (sign batches with it)")
        out.append(
            f"demo rides: {self.rides_accepted} pushed now, {self.rides_credited} credited in all; "
            f"{self.roots_computed} Merkle root(s) computed"
        )
        for role, phone, name in self.people:
            out.append(f"demo login: {role:<9} phone {phone} password {DEMO_PASSWORD}  ({name})")
        return out


def _user(phone: str):
    return User.objects.filter(phone_hash=phone_hash(normalize_phone(phone))).first()


def _partner(report: DemoReport):
    from backend.partners import services as partners
    from backend.partners.models import Partner, PartnerSecret

    partner = Partner.objects.filter(name=PARTNER_NAME).first()
    if partner is None:
        partner, secret = partners.partner_create(
            name=PARTNER_NAME, methodologies=PARTNER_METHODOLOGIES, subject_kinds=PARTNER_KINDS
        )
        report.created.append("partner")
    else:
        # A demo partner on a development database: showing its live secret again is the point.
        newest = partner.secrets.filter(status=PartnerSecret.Status.ACTIVE).order_by("-created_at").first()
        secret = decrypt(newest.secret_encrypted) if newest else partners.partner_secret_rotate(partner_id=partner.pk)
    report.partner_id, report.partner_secret = partner.pk, secret
    return partner


def _people(report: DemoReport) -> list[tuple[User, tuple | None]]:
    from backend.accounts import services as accounts

    out = []
    for phone, role, name, district, card in PEOPLE:
        user = _user(phone)
        if user is None:
            if role == User.Role.RESIDENT:
                user = accounts.user_register(
                    phone=phone, password=DEMO_PASSWORD, display_name=name, district=district, partner_data_consent=True
                )
            else:
                user = accounts.user_create(phone=phone, password=DEMO_PASSWORD, role=role, display_name=name)
            report.created.append(role)
        report.people.append((role, phone, name))
        out.append((user, card))
    return out


def _link(partner, resident: User, kind: str, identifier: str, report: DemoReport) -> None:
    from backend.actions import links
    from backend.actions.models import SubjectBinding
    from backend.actions.subjects import subject_hash

    if SubjectBinding.objects.live().filter(resident=resident, identifier_hash=subject_hash(kind, identifier)).exists():
        return
    # The resident asks for a one-time code in the app; the partner attests that the card holder typed it.
    _code_row, code = links.link_code_create(resident=resident, kind=kind)
    links.link_confirm(partner=partner, nonce=uuid.uuid4().hex, code=code, kind=kind, identifier=identifier)
    report.created.append(f"card link {kind}")


def _ride_items(resident: User, card: tuple, now: datetime) -> list[dict]:
    from backend.core.days import SHANGHAI

    kind, identifier, methodology, data = card
    today = now.astimezone(SHANGHAI).date()
    items = []
    for back in range(DAYS):
        day = today - timedelta(days=back)
        for at in RIDE_TIMES:
            occurred = datetime.combine(day, at, tzinfo=SHANGHAI)
            if not now - timedelta(days=DAYS) + timedelta(hours=1) < occurred < now - timedelta(minutes=5):
                continue
            items.append(
                {
                    "external_id": f"demo-{resident.pk}-{occurred:%Y%m%d-%H%M}",
                    "methodology": methodology,
                    "subject": {"kind": kind, "identifier": identifier},
                    "occurred_at": occurred.isoformat(),
                    "data": data,
                }
            )
    return items


def _rides(partner, people, report: DemoReport) -> None:
    from backend.actions import services as actions
    from backend.actions.models import Action, IngestBatch
    from backend.ledger.services import ledger_backfill

    now = timezone.now()
    items = [item for user, card in people if card for item in _ride_items(user, card, now)]
    known = set(
        Action.objects.filter(partner=partner, external_id__in=[i["external_id"] for i in items]).values_list(
            "external_id", flat=True
        )
    )
    fresh = [item for item in items if item["external_id"] not in known]
    if fresh:
        nonce = uuid.uuid4().hex
        # Imported history: each ride is booked on its own (past, still open) day, so that `_roots` can seal those
        # days at once and a proof works on the first try; today's rides are booked today and prove after
        # tonight's root. One transaction: the batch task the ingestion enqueues on commit (run in-process on the
        # embedded default, by a worker otherwise) finds every ride already credited here, in the backfill.
        with ledger_backfill(), transaction.atomic():
            results = actions.actions_ingest(partner=partner, nonce=nonce, items=fresh)
            report.rides_accepted = sum(1 for r in results if r["status"] == "accepted")
            rejected = [r for r in results if r["status"] == "rejected"]
            if rejected:  # the demo's own data is wrong: say so rather than seed a half demo
                raise ValueError(f"demo rides rejected: {rejected[:3]}")
            actions.batch_process(batch_id=IngestBatch.objects.get(partner=partner, nonce=nonce).pk)
        report.created.append(f"{report.rides_accepted} rides")
    report.rides_credited = Action.objects.filter(
        partner=partner, external_id__startswith="demo-", status=Action.Status.CREDITED
    ).count()


def _roots(report: DemoReport) -> None:
    """Roots of the demo week's finished days, which hold its backfilled rides (the nightly beat task computes
    the roots from then on)."""
    from backend.core.days import SHANGHAI
    from backend.ledger import services as ledger
    from backend.ledger.models import MerkleRoot

    today = timezone.now().astimezone(SHANGHAI).date()
    for back in range(DAYS, 0, -1):
        day = today - timedelta(days=back)
        if not MerkleRoot.objects.filter(day=day).exists():
            ledger.merkle_root_compute(day=day)
            report.roots_computed += 1


def demo_seed() -> DemoReport:
    """Seed (or find in place) the quick-start demo; returns what it did and how to log in."""
    report = DemoReport()
    partner = _partner(report)
    people = _people(report)
    for user, card in people:
        if card:
            _link(partner, user, card[0], card[1], report)
    _rides(partner, people, report)
    _roots(report)
    return report
