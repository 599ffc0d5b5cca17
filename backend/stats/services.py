"""Every write of the statistics app (its public face): aggregation, rebuilds, leaderboard listing, erasure.

stats_aggregate()                         beat, every minute: ledger since the watermark -> aggregates
stats_rebuild(start=, end=)               `manage.py stats_rebuild --from D --to D`
leaderboards_rebuild()                    nightly and on demand: Redis boards from PostgreSQL
leaderboards_credits_posted(credits)      after a credit commits (called from the ledger)
leaderboard_listing_set(user=, listed=)   a resident's opt-out / opt-in
stats_erase_personal_data(user=)          PIPL erasure
"""

from django.db import transaction
from django.utils import timezone

from backend.stats import leaderboards
from backend.stats.aggregation import stats_aggregate, stats_rebuild
from backend.stats.leaderboards import leaderboards_credits_posted, leaderboards_rebuild
from backend.stats.models import LeaderboardPreference, ResidentDay

__all__ = [
    "leaderboard_listing_set",
    "leaderboards_credits_posted",
    "leaderboards_rebuild",
    "stats_aggregate",
    "stats_erase_personal_data",
    "stats_rebuild",
]


@transaction.atomic
def leaderboard_listing_set(*, user, listed: bool) -> LeaderboardPreference:
    """Show (by display name) or hide the resident on leaderboards. Redis follows after commit; if it is down
    the boards catch up at the nightly rebuild (which reads the preference)."""
    pref, _ = LeaderboardPreference.objects.select_for_update().get_or_create(user=user)
    if pref.listed != listed:
        pref.listed = listed
        pref.updated_at = timezone.now()
        pref.save(update_fields=["listed", "updated_at"])
        action = leaderboards.resident_restore if listed else leaderboards.resident_remove
        transaction.on_commit(lambda: _best_effort(action, user.id))
    return pref


def _best_effort(fn, user_id: int) -> None:
    try:
        fn(user_id=user_id)
    except Exception:
        leaderboards.logger.warning("leaderboard listing change not applied to Redis yet", exc_info=True)


def stats_erase_personal_data(*, user, context: dict | None = None) -> dict:
    """Erasure step (PIPL; see backend/accounts/erasure.py): the resident leaves every leaderboard and their
    listing preference is deleted.

    Kept: ResidentDay rows (per-day sums keyed by the user id only, no name or phone, like the ledger they are
    derived from) because the published aggregates must stay reproducible; their district only when the
    resident consented to statistics (like the user row's). DailyStat / MonthlyStat hold no personal data.
    Leaderboards also drop erased residents on read and on every rebuild, so Redis being down here is repaired
    by the nightly rebuild."""
    if not (context or {}).get("statistics_consent"):
        ResidentDay.objects.filter(resident_id=user.id).exclude(district="").update(district="")
    deleted, _ = LeaderboardPreference.objects.filter(user_id=user.id).delete()
    removed = 0
    try:
        removed = leaderboards.resident_remove(user_id=user.id)
    except Exception:
        leaderboards.logger.warning("erased resident not yet removed from Redis boards", exc_info=True)
    return {"preferences_deleted": deleted, "boards_left": removed}
