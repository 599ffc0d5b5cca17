"""Redemption, the authorisation half of the two-phase flow (`reward_redeem`, re-exported by rewards/services.py,
the app's public face): resident -> system:redemption_hold (ledger points_spend, lots soonest expiry first), one
item out of stock, a voucher `issued`, exactly once per (resident, Idempotency-Key).

On PostgreSQL it is ONE statement and one round trip (`locking.redeem_in_one_statement`, the function of
rewards/migrations/0004, which calls the ledger's `ledger_points_spend`): the reward read, its availability, the
voucher claim, the limit claim, the points and the item, its own transaction. `_authorise` does the same step by
step elsewhere (the SQLite quick start, a ledger backfill); both write the same rows (tested). Also here: voucher
codes, the request hash of an Idempotency-Key, the hold's ledger key and content."""

import hashlib
import json
import re
import secrets
from datetime import datetime, timedelta

from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from backend.core.errors import ApplicationError
from backend.ledger.services import ledger_backfilling, points_spend
from rewards import locking
from rewards.cache import catalogue_changed
from rewards.models import Merchant, Reward, Voucher
from rewards.selectors import MAX_ID, reward_for_redemption

# 31 characters without look-alikes (no 0/O, 1/I/L); 12 of them are ~59 bits: unguessable at any rate limit.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 12
IDEMPOTENCY_KEY_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,100}$")
HOLD_ACCOUNT = "system:redemption_hold"


_UNBIASED = 256 - 256 % len(CODE_ALPHABET)  # bytes below this map onto the alphabet uniformly


def voucher_code_new() -> str:
    """12 characters from the OS's CSPRNG, uniform over the alphabet (bytes >= _UNBIASED are drawn again): one
    `token_bytes` call instead of twelve `secrets.choice`."""
    code = ""
    while len(code) < CODE_LENGTH:
        code += "".join(CODE_ALPHABET[b % len(CODE_ALPHABET)] for b in secrets.token_bytes(16) if b < _UNBIASED)
    return code[:CODE_LENGTH]


def voucher_code_normalize(code: str) -> str:
    """What a cashier types: case, spaces and dashes do not matter."""
    return re.sub(r"[\s\-]", "", str(code or ""))[:32].upper()


def request_hash(*, reward_id: int, body) -> str:
    canonical = json.dumps({"reward": reward_id, "body": body}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def hold_key(voucher_id: int) -> str:
    return f"voucher:{voucher_id}:hold"


# --- authorisation ----------------------------------------------------------------------------------------


def _replay(*, resident_id: int, idempotency_key: str, rhash: str) -> Voucher | None:
    voucher = (
        Voucher.objects.select_related("reward", "merchant")
        .filter(resident_id=resident_id, idempotency_key=idempotency_key)
        .first()
    )
    if voucher is not None and voucher.request_hash != rhash:
        raise ApplicationError(
            _("This Idempotency-Key was used for a different request."),
            code="idempotency_key_reused",
            status_code=422,
        )
    return voucher


def _check_available(reward: Reward, resident, now: datetime) -> None:
    """The step-by-step path's availability checks; `rewards_redeem` makes the same ones in SQL and names them
    with the same codes (`_refusal`)."""
    if reward.status != Reward.Status.ACTIVE or reward.merchant.status != Merchant.Status.ACTIVE:
        raise _refusal("reward_not_available:status")
    if now < reward.valid_from or (reward.valid_until and now >= reward.valid_until):
        raise _refusal("reward_not_available:time")
    if reward.district_id and reward.district_id != resident.district_id:
        raise _refusal("reward_not_available:district")
    if reward.stock == 0:  # fast path only: the guarded UPDATE below is what decides
        raise _refusal("reward_out_of_stock")


def reward_redeem(*, resident, reward_id: int, idempotency_key: str | None, body=None) -> tuple[Voucher, bool]:
    """Redeem a reward for a voucher, exactly once per (resident, Idempotency-Key). Returns (voucher, created):
    the same key and body again returns the first voucher (created False); another body is 422
    `idempotency_key_reused`. Refusals: `insufficient_points`, `reward_out_of_stock`, `reward_limit_reached`,
    `reward_not_available` (409), an unknown reward is 404. Nothing is held or taken unless all succeed."""
    if not idempotency_key:
        raise ApplicationError(_("The Idempotency-Key header is required."), code="idempotency_key_required")
    if not IDEMPOTENCY_KEY_RE.match(idempotency_key):
        raise ApplicationError(
            _("Idempotency-Key: 1 to 100 letters, digits or _ . : -"), code="idempotency_key_invalid"
        )
    rhash = request_hash(reward_id=reward_id, body=body or {})
    if connection.vendor == "postgresql" and not ledger_backfilling():
        return _redeem_in_one_statement(resident=resident, reward_id=reward_id, key=idempotency_key, rhash=rhash)
    # No look-up of the key first: the voucher INSERT's unique index is the idempotency check (a replay is the
    # rare case and pays for it below). A refusal before that INSERT looks for a replay first, so the same key
    # still answers the same voucher after the reward ran out or was paused.
    try:
        reward = reward_for_redemption(reward_id=reward_id)
        if reward is None:
            raise _refusal("not_found")
        now = timezone.now()
        _check_available(reward, resident, now)
    except ApplicationError:
        replay = _replay(resident_id=resident.pk, idempotency_key=idempotency_key, rhash=rhash)
        if replay is not None:
            return replay, False
        raise
    for _attempt in range(3):
        try:
            return _authorise(resident=resident, reward=reward, key=idempotency_key, rhash=rhash, now=now), True
        except IntegrityError as exc:
            # The key was used before (a replay), or a concurrent request with it committed first: answer with
            # its voucher. (Asked of the table, not of the message: SQLite does not name the constraint.)
            replay = _replay(resident_id=resident.pk, idempotency_key=idempotency_key, rhash=rhash)
            if replay is not None:
                return replay, False
            if "code" not in str(exc):  # else a voucher code collision: again with a new code
                raise
    raise ApplicationError(_("Please try again."), code="retry", status_code=503)


def _voucher_new(*, resident, reward: Reward, key: str, rhash: str, now: datetime) -> Voucher:
    period_key = locking.limit_period_key(reward.limit_period, now) if reward.limit_count else ""
    return Voucher(
        code=voucher_code_new(),
        reward=reward,
        merchant=reward.merchant,  # already loaded: the response needs no further query
        resident=resident,
        idempotency_key=key,
        request_hash=rhash,
        points_cost=reward.points_cost,
        face_value_minor=reward.face_value_minor,
        currency=reward.currency,
        limit_period_key=period_key,
        stock_taken=reward.stock is not None,
        issued_at=now,
        expires_at=now + timedelta(days=reward.voucher_validity_days),
    )


_REFUSALS = {  # the message of each refusal, on both paths (the SQL function raises these codes)
    "reward_limit_reached": _("You have reached this reward's limit for the period."),
    "insufficient_points": _("Not enough points."),
    "reward_out_of_stock": _("This reward is out of stock."),
    "reward_not_available:status": _("This reward is not available."),
    "reward_not_available:time": _("This reward is not available at this time."),
    "reward_not_available:district": _("This reward is only for residents of another district."),
}


def _refusal(code: str) -> ApplicationError:
    """The API error of a refusal code: 404 for an unknown reward, else 409 (`reward_not_available:<why>` is
    answered as `reward_not_available` with the reason's message)."""
    if code == "not_found":
        return ApplicationError(_("No such reward."), code="not_found", status_code=404)
    return ApplicationError(_REFUSALS[code], code=code.partition(":")[0], status_code=409)


def _hold_reason(reward: Reward) -> str:
    return f"Reward: {reward.title_zh}"[:255]


def hold_content(*, resident_id: int, points: int, reward_id: int, voucher_id: int) -> dict:
    """What the content hash of a voucher's hold transaction covers, on both paths (the database function of
    rewards/migrations/0004 writes the same JSON text; tests/rewards/test_redeem_statement.py compares them)."""
    return {
        "kind": "points_spend",
        "postings": [[f"resident:{resident_id}:points", -points], [HOLD_ACCOUNT, points]],
        "reward": reward_id,
        "source": ["voucher", voucher_id],
    }


def _redeem_in_one_statement(*, resident, reward_id: int, key: str, rhash: str) -> tuple[Voucher, bool]:
    """PostgreSQL: the reward read, its availability and (1)-(4) of `_authorise` in one statement and one round
    trip, its own transaction (`locking.redeem_in_one_statement`, the function of rewards/migrations/0004)."""
    reward_id = min(int(reward_id), MAX_ID)
    for _attempt in range(3):
        code, now = voucher_code_new(), timezone.now()
        try:
            row = locking.redeem_in_one_statement(
                reward_id=reward_id, resident=resident, idempotency_key=key, request_hash=rhash, code=code, now=now
            )
        except locking.RedeemRefused as exc:
            raise _refusal(exc.code) from None
        if row.outcome == "created":
            if row.stock_taken:
                catalogue_changed()  # after the commit (at once: the statement was its own transaction)
            return _voucher_issued(
                row, reward_id=reward_id, resident=resident, key=key, rhash=rhash, code=code, now=now
            )
        # Nothing written: the key was used (a replay, or a concurrent request with it committed first), or the
        # voucher code collided (then the look-up finds nothing and the loop tries a new code).
        replay = _replay(resident_id=resident.pk, idempotency_key=key, rhash=rhash)
        if replay is not None:
            return replay, False
    raise ApplicationError(_("Please try again."), code="retry", status_code=503)


def _voucher_issued(row: locking.Redeemed, *, reward_id: int, resident, key, rhash, code, now) -> tuple[Voucher, bool]:
    """The voucher the statement wrote, with what its response shows of the reward and the merchant (loaded as
    deferred instances: any other field is read on first access, as with `.only()`)."""
    db = connection.alias
    reward = Reward.from_db(
        db, ["id", "merchant_id", "title_zh", "title_en"], [reward_id, row.merchant_id, row.title_zh, row.title_en]
    )
    merchant = Merchant.from_db(
        db, ["id", "name_zh", "name_en", "address"], [row.merchant_id, row.name_zh, row.name_en, row.address]
    )
    reward.merchant = merchant
    voucher = Voucher(
        id=row.voucher_id,
        code=code,
        reward=reward,
        merchant=merchant,
        resident=resident,
        idempotency_key=key,
        request_hash=rhash,
        points_cost=row.points_cost,
        face_value_minor=row.face_value_minor,
        currency=row.currency,
        limit_period_key=row.limit_period_key,
        stock_taken=row.stock_taken,
        issued_at=now,
        expires_at=row.expires_at,
    )
    voucher._state.adding, voucher._state.db = False, db
    return voucher, True


@transaction.atomic
def _authorise(*, resident, reward: Reward, key: str, rhash: str, now: datetime) -> Voucher:
    """Elsewhere than PostgreSQL (the embedded SQLite quick start) and while importing history: the same, one
    statement after another in one transaction."""
    voucher = _voucher_new(resident=resident, reward=reward, key=key, rhash=rhash, now=now)
    # (1) The idempotency claim. A concurrent request with the same key waits here on the unique index until
    # the first commits (then fails with IntegrityError and replays) or rolls back (then goes on).
    locking.voucher_claim(voucher)
    # (2) The per-resident limit: one guarded upsert is the claim.
    if reward.limit_count and not locking.limit_claim(
        reward_id=reward.pk, resident_id=resident.pk, period_key=voucher.limit_period_key, limit=reward.limit_count
    ):
        raise _refusal("reward_limit_reached")
    # (3) The points: resident -> hold, lots soonest expiry first; the balance CHECK is the backstop.
    try:
        points_spend(
            resident_id=resident.pk,
            points=reward.points_cost,
            idempotency_key=hold_key(voucher.pk),
            reason=_hold_reason(reward),
            source_type="voucher",
            source_id=voucher.pk,
            savepoint=False,  # any refusal rolls back the whole redemption: no partial rollback needed
            content=hold_content(
                resident_id=resident.pk, points=reward.points_cost, reward_id=reward.pk, voucher_id=voucher.pk
            ),
        )
    except ApplicationError as exc:
        if exc.get_codes() == "insufficient_points":
            raise _refusal("insufficient_points") from None
        raise
    # (4) The item: the hot row, locked last and only until commit, which goes out in the same round trip
    # (`stock_take_and_commit`: nothing may be written after it).
    if reward.stock is not None:
        catalogue_changed()  # registered now, run after the commit (dropped with a rollback)
        if not locking.stock_take_and_commit(reward_id=reward.pk):
            raise _refusal("reward_out_of_stock")
    return voucher
