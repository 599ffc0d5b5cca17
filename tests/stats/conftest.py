import pytest

from backend.stats import leaderboards


def flush_boards() -> int:
    """Delete this worker's leaderboard keys (the other xdist worker's keys have another prefix)."""
    r = leaderboards.client()
    if r is None:
        return 0
    keys = list(r.scan_iter(match=f"{leaderboards.key_prefix()}*", count=1000))
    return r.delete(*keys) if keys else 0


@pytest.fixture(autouse=True)
def _clean_boards():
    leaderboards._client = None
    flush_boards()
    yield
    leaderboards._client = None
