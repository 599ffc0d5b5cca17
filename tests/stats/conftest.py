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


@pytest.fixture
def make_resident(reference_data):
    """Residents without the Argon2 password hash (make_user costs ~0.6 s each; these tests need hundreds)."""
    import uuid

    from backend.accounts.models import User

    def make(district="370202", display_name="居民", **extra):
        return User.objects.create(
            phone_hash=uuid.uuid4().hex,
            phone_masked="139****0000",
            district_id=district,
            display_name=display_name,
            role=User.Role.RESIDENT,
            **extra,
        )

    return make
