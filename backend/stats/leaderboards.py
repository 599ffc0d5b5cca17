"""Leaderboards: Redis sorted sets of grams per resident for the current Asia/Shanghai week and month, city-wide
and per district. Redis is never the truth: boards are bumped after each credit commits (best effort: a Redis
outage is logged and never fails crediting) and rebuilt from PostgreSQL (ResidentDay) nightly and on demand.

Keys: <prefix>lb:<week|month>:<period start>:<city|district code>, member = user id, score = grams.
Residents who opted out (LeaderboardPreference.listed = False) and erased residents are never members.
Without REDIS_URL (the embedded quick start) or when Redis is down, boards are computed from PostgreSQL."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone

from backend.core.bulk import BoundCursor
from backend.core.days import SHANGHAI, local_day
from backend.stats.aggregation import resident_grams, resident_period_grams
from backend.stats.models import LeaderboardPreference

logger = logging.getLogger(__name__)
PERIODS = ("week", "month")
CITY = "city"
KEY_TTL_S = 70 * 24 * 3600  # a month's board outlives its month by weeks, then Redis forgets it
_client: redis.Redis | None = None


def client() -> redis.Redis | None:
    """A Redis client with short timeouts (a leaderboard must never hold up crediting), or None without Redis."""
    global _client
    if not settings.REDIS_URL:
        return None
    if _client is None:
        _client = redis.Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=0.5, socket_timeout=0.5, decode_responses=True
        )
    return _client


def key_prefix() -> str:
    return f"{settings.CACHES['default'].get('KEY_PREFIX', '')}:lb:"


def period_start(period: str, day: date) -> date:
    if period == "week":
        return day - timedelta(days=day.weekday())  # Monday: a Chinese calendar week
    return day.replace(day=1)


def period_end(period: str, start: date) -> date:
    """The last day of the period starting on `start`."""
    if period == "week":
        return start + timedelta(days=6)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)


def current_start(period: str) -> date:
    return period_start(period, timezone.now().astimezone(SHANGHAI).date())


def board_key(period: str, start: date, scope: str) -> str:
    return f"{key_prefix()}{period}:{start.isoformat()}:{scope}"


# -------------------------------------------------------------------------------------------- after commit


def leaderboards_credits_posted(credits) -> None:
    """Bump the boards for freshly posted (non-pending) credits. Runs after the crediting transaction commits;
    any failure (Redis down, a bug) is logged and swallowed: the nightly rebuild repairs the boards."""
    try:
        _bump(credits)
    except Exception:  # a leaderboard must never break crediting
        logger.warning("leaderboard update skipped; the nightly rebuild will repair it", exc_info=True)


# One call per board: ZINCRBY for every (member, grams) pair, then the key's TTL. A batch of 1,000 credits
# used to be 4,000 pipelined commands (one ZINCRBY and one EXPIRE per board per credit); this is one per board.
# The pairs travel as one JSON object (member -> grams), decoded by Redis's cjson: redis-py packs each argument
# in Python, and two per member per board were most of the bump's cost. Grams are integers far below 2^53, so
# Lua's numbers keep them exact.
BUMP_SCRIPT = """
for member, grams in pairs(cjson.decode(ARGV[2])) do redis.call('ZINCRBY', KEYS[1], grams, member) end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""
_bump_script = None
# The active residents among those credited who did not opt out of the boards, with their districts.
LISTED_RESIDENTS = (
    "SELECT u.id, u.district_id FROM accounts_user u WHERE u.id = ANY(%b::bigint[]) AND u.is_active"
    " AND NOT EXISTS (SELECT 1 FROM stats_leaderboardpreference p WHERE p.user_id = u.id AND NOT p.listed)"
)


def _bump(credits) -> None:
    from backend.accounts.models import User

    global _bump_script
    r = client()
    wanted = [c for c in credits if c.grams > 0 and not c.pending]
    if r is None or not wanted:
        return
    residents = {c.resident_id for c in wanted}
    if connection.vendor == "postgresql":  # one array parameter: the ORM's IN list of 1,000 ids cost more
        with BoundCursor() as cur:
            cur.execute(LISTED_RESIDENTS, [sorted(residents)], prepare=True)
            listed = dict(cur.fetchall())
    else:
        listed = dict(
            User.objects.filter(id__in=residents, is_active=True)
            .exclude(id__in=LeaderboardPreference.objects.filter(user_id__in=residents, listed=False).values("user_id"))
            .values_list("id", "district_id")
        )
    # Summed per board and member first: a resident's rides of one batch are one increment.
    boards: dict[str, dict[int, int]] = {}
    starts: dict = {}
    for c in wanted:
        if c.resident_id not in listed:
            continue
        day = local_day(c.effective_at)
        if day not in starts:
            starts[day] = [(period, period_start(period, day)) for period in PERIODS]
        for period, start in starts[day]:
            for scope in (CITY, listed[c.resident_id]):
                if scope:
                    board = boards.setdefault(board_key(period, start, scope), {})
                    board[c.resident_id] = board.get(c.resident_id, 0) + c.grams
    if not boards:
        return
    if _bump_script is None:
        _bump_script = r.register_script(BUMP_SCRIPT)
    pipe = r.pipeline(transaction=False)
    for key, increments in boards.items():
        _bump_script(keys=[key], args=[KEY_TTL_S, json.dumps(increments)], client=pipe)
    pipe.execute()


# -------------------------------------------------------------------------------------------- from the DB


def boards_from_db(period: str, start: date) -> dict[str, dict[int, int]]:
    """Every board of one period from PostgreSQL: {scope: {user id: grams}} for listed, active residents with
    grams > 0 (one pass over the period's aggregates plus the ledger tail, then split by district)."""
    from backend.accounts.models import User

    grams = resident_grams(start=start, end=period_end(period, start))
    users = (
        User.objects.filter(id__in=[uid for uid, g in grams.items() if g > 0], is_active=True)
        .exclude(id__in=LeaderboardPreference.objects.filter(listed=False).values("user_id"))
        .values_list("id", "district_id")
    )
    boards: dict[str, dict[int, int]] = {CITY: {}}
    for uid, district in users:
        boards[CITY][uid] = grams[uid]
        if district:
            boards.setdefault(district, {})[uid] = grams[uid]
    return boards


def board_from_db(period: str, start: date, scope: str) -> dict[int, int]:
    return boards_from_db(period, start).get(scope, {})


def leaderboards_rebuild(*, periods=PERIODS, starts: dict | None = None) -> dict[str, int]:
    """Rebuild the current boards (every scope) from PostgreSQL (aggregates plus the ledger tail).
    Each board is written to a temporary key and renamed over the live one (readers never see half a board).
    Bumps for credits committed while this runs may be overwritten; the next rebuild restores them."""
    from backend.accounts.models import District

    r = client()
    written = {}
    scopes = [CITY, *District.objects.values_list("code", flat=True)]
    for period in periods:
        start = (starts or {}).get(period) or current_start(period)
        boards = boards_from_db(period, start)
        for scope in scopes:
            key = board_key(period, start, scope)
            board = boards.get(scope, {})
            written[key] = len(board)
            if r is None:
                continue
            pipe = r.pipeline(transaction=True)
            tmp = f"{key}:rebuild"
            pipe.delete(tmp)
            if board:
                items = list(board.items())
                for i in range(0, len(items), 5000):
                    pipe.zadd(tmp, dict(items[i : i + 5000]))
                pipe.expire(tmp, KEY_TTL_S)
                pipe.rename(tmp, key)
            else:
                pipe.delete(key)
            pipe.execute()
    return written


def resident_remove(*, user_id: int) -> int:
    """Take a resident off every board in Redis (opt-out, erasure). Returns how many boards held them."""
    r = client()
    if r is None:
        return 0
    removed = 0
    for key in r.scan_iter(match=f"{key_prefix()}*", count=500):
        removed += r.zrem(key, user_id)
    return removed


def resident_restore(*, user_id: int) -> None:
    """Put a resident who opts back in on the current boards with their grams from PostgreSQL."""
    from backend.accounts.models import User

    r = client()
    user = User.objects.filter(id=user_id, is_active=True).values("district_id").first()
    if r is None or user is None:
        return
    starts = {period: current_start(period) for period in PERIODS}
    grams = resident_period_grams(
        resident_id=user_id, periods={p: (start, period_end(p, start)) for p, start in starts.items()}
    )
    pipe = r.pipeline(transaction=False)
    for period, start in starts.items():
        if grams[period] > 0:
            for scope in (CITY, user["district_id"]):
                if scope:
                    pipe.zadd(board_key(period, start, scope), {user_id: grams[period]})
    pipe.execute()


# ------------------------------------------------------------------------------------------------ reading


@dataclass
class Standing:
    user_id: int
    rank: int  # 1-based, ties broken by user id like Redis (lexicographic member order)
    grams: int


def board_page(*, period: str, scope: str, limit: int) -> tuple[list[Standing], int, str]:
    """The top `limit` of a current board, its size and where it came from ("redis" or "database")."""
    start = current_start(period)
    r = client()
    if r is not None:
        try:
            key = board_key(period, start, scope)
            top = r.zrevrange(key, 0, limit - 1, withscores=True)
            size = r.zcard(key)
            return [Standing(int(m), i + 1, int(s)) for i, (m, s) in enumerate(top)], size, "redis"
        except redis.RedisError:
            logger.warning("leaderboard read from the database: Redis unavailable", exc_info=True)
    ordered = _db_ordered(period, start, scope)
    return ordered[:limit], len(ordered), "database"


def board_around(*, period: str, scope: str, user_id: int, neighbours: int = 2) -> list[Standing]:
    """The resident's own standing with up to `neighbours` entries either side ([] when not on the board)."""
    start = current_start(period)
    r = client()
    if r is not None:
        try:
            key = board_key(period, start, scope)
            rank = r.zrevrank(key, user_id)
            if rank is None:
                return []
            lo = max(rank - neighbours, 0)
            rows = r.zrevrange(key, lo, rank + neighbours, withscores=True)
            return [Standing(int(m), lo + i + 1, int(s)) for i, (m, s) in enumerate(rows)]
        except redis.RedisError:
            logger.warning("leaderboard read from the database: Redis unavailable", exc_info=True)
    ordered = _db_ordered(period, start, scope)
    mine = next((s for s in ordered if s.user_id == user_id), None)
    if mine is None:
        return []
    return ordered[max(mine.rank - 1 - neighbours, 0) : mine.rank + neighbours]


def _db_ordered(period: str, start: date, scope: str) -> list[Standing]:
    board = board_from_db(period, start, scope)
    # Redis orders equal scores by member (the id as a string), descending in ZREVRANGE: do the same.
    ordered = sorted(board.items(), key=lambda kv: (kv[1], str(kv[0])), reverse=True)
    return [Standing(uid, i + 1, g) for i, (uid, g) in enumerate(ordered)]


def period_bounds(period: str) -> tuple[date, date]:
    start = current_start(period)
    return start, period_end(period, start)


def now_shanghai() -> datetime:
    return timezone.now().astimezone(SHANGHAI)
