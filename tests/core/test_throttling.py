"""The Redis throttles (backend/core/throttling.py): a sliding-window counter in one round trip per throttle that
still limits, does not count refused requests, weighs the previous window, and fails open without Redis."""

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.cache import cache
from django.test import RequestFactory
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from backend.core import throttling
from tests.conftest import client_for

pytestmark = pytest.mark.skipif(throttling._redis_client() is None, reason="needs Redis (make test)")


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def user_throttle(rate: str, clock: Clock):
    class Throttle(throttling.UserRateThrottle):
        THROTTLE_RATES = {"user": rate}
        timer = clock

    return Throttle()


def request_of(user):
    request = Request(RequestFactory().get("/"))
    request.user = user
    return request


@pytest.mark.django_db
def test_user_throttle_limits_and_does_not_count_refusals(resident):
    clock = Clock(1_000_040.0)  # 20 s into a minute window
    request = request_of(resident)
    allowed = [user_throttle("3/min", clock).allow_request(request, None) for _ in range(5)]
    assert allowed == [True, True, True, False, False]
    refused = user_throttle("3/min", clock)
    assert refused.allow_request(request, None) is False
    assert 1 <= refused.wait() <= 60
    key = cache.make_key(f"throttle_user_{resident.pk}:{int(clock.now // 60)}")
    assert int(throttling._redis_client().get(key)) == 3  # the three refusals were taken back


@pytest.mark.django_db
def test_previous_window_weighs_in_while_it_slides_out(resident):
    clock = Clock(1_000_020.0)
    request = request_of(resident)
    for _ in range(4):
        assert user_throttle("4/min", clock).allow_request(request, None)
    # 30 s into the next window: half of the previous window's 4 still counts (2), so 2 more are allowed.
    clock.now = (int(clock.now // 60) + 1) * 60 + 30
    allowed = [user_throttle("4/min", clock).allow_request(request, None) for _ in range(3)]
    assert allowed == [True, True, False]
    # Near the end of the following window the previous one (2 requests) has all but slid out.
    clock.now = (int(clock.now // 60) + 1) * 60 + 59.9
    assert [user_throttle("4/min", clock).allow_request(request, None) for _ in range(4)] == [
        True,
        True,
        True,
        True,
    ]


@pytest.mark.django_db
def test_one_redis_round_trip_per_request(resident, monkeypatch):
    client = throttling._redis_client()
    calls = []
    original = type(client).pipeline

    def counting_pipeline(self, *args, **kwargs):
        pipe = original(self, *args, **kwargs)
        execute = pipe.execute

        def traced():
            calls.append([c[0][0] for c in pipe.command_stack])
            return execute()

        pipe.execute = traced
        return pipe

    monkeypatch.setattr(type(client), "pipeline", counting_pipeline)
    monkeypatch.setattr(client, "get", lambda *a, **k: pytest.fail("a separate GET"), raising=False)
    assert user_throttle("10/min", Clock(1_000_020.0)).allow_request(request_of(resident), None)
    assert calls == [["INCRBY", "EXPIRE", "GET"]]  # redis-py sends INCR as INCRBY 1


@pytest.mark.django_db
def test_throttled_api_request_answers_429_with_retry_after(resident):
    original = SimpleRateThrottle.THROTTLE_RATES
    SimpleRateThrottle.THROTTLE_RATES = {**original, "user": "2/min"}
    try:
        api = client_for(resident)
        statuses = [api.get("/api/v1/me/wallet").status_code for _ in range(3)]
        response = api.get("/api/v1/me/wallet")
    finally:
        SimpleRateThrottle.THROTTLE_RATES = original
    assert statuses == [200, 200, 429]
    assert response.status_code == 429
    assert response.json()["errors"][0]["code"] == "throttled"
    assert int(response["Retry-After"]) >= 1


@pytest.mark.django_db
def test_throttle_fails_open_when_redis_is_down(resident, monkeypatch):
    def broken():
        raise ConnectionError("redis down")

    monkeypatch.setattr(throttling, "_redis_client", broken)
    assert user_throttle("1/min", Clock(1_000_020.0)).allow_request(request_of(resident), None) is True


@pytest.mark.django_db
def test_one_throttle_round_trip_per_request_anonymous_or_signed_in(api, resident, reference_data):
    from rest_framework.settings import api_settings

    anonymous, signed_in = request_of(AnonymousUser()), request_of(resident)
    throttles = [cls() for cls in api_settings.DEFAULT_THROTTLE_CLASSES]
    assert [t.get_cache_key(anonymous, None) is not None for t in throttles] == [True, False]
    assert [t.get_cache_key(signed_in, None) is not None for t in throttles] == [False, True]


def _round_trips(call) -> int:
    """Redis round trips made by call(): a pipeline is one packet, like a single command."""
    from redis.connection import AbstractConnection

    sent = []
    original = AbstractConnection.send_packed_command

    def counting(self, *args, **kwargs):
        sent.append(args[0] if args else None)
        return original(self, *args, **kwargs)

    AbstractConnection.send_packed_command = counting
    try:
        call()
    finally:
        AbstractConnection.send_packed_command = original
    return len(sent)


def _user_window_count(user) -> int:
    import time

    key = cache.make_key(f"throttle_user_{user.pk}:{int(time.time() // 60)}")
    return int(throttling._redis_client().get(key) or 0)


@pytest.mark.django_db
def test_signed_in_read_is_one_redis_round_trip_for_user_row_and_throttles(resident):
    """Failed before: the cached user row's GET and the throttle pipeline were two round trips."""
    api = client_for(resident)
    assert api.get("/api/v1/me/wallet").status_code == 200  # user row cached now
    before = _user_window_count(resident)
    responses = []
    assert _round_trips(lambda: responses.append(api.get("/api/v1/me/wallet"))) == 1
    assert responses[0].status_code == 200
    assert _user_window_count(resident) == before + 1  # still counted exactly once


@pytest.mark.django_db
def test_combined_round_trip_still_throttles_with_retry_after(resident):
    original = SimpleRateThrottle.THROTTLE_RATES
    SimpleRateThrottle.THROTTLE_RATES = {**original, "user": "3/min"}
    try:
        api = client_for(resident)
        statuses = [api.get("/api/v1/me/wallet").status_code for _ in range(6)]
    finally:
        SimpleRateThrottle.THROTTLE_RATES = original
    assert statuses == [200, 200, 200, 429, 429, 429]
    assert _user_window_count(resident) <= 3  # refusals were taken back


@pytest.mark.django_db
def test_permission_denied_request_is_not_counted(resident):
    """DRF checks throttles after permissions: a refused request must not use the user's allowance even though its
    counter travelled with the authentication's round trip."""
    api = client_for(resident)
    assert api.get("/api/v1/me/wallet").status_code == 200
    before = _user_window_count(resident)
    for _ in range(3):
        assert api.get("/api/v1/admin/stats").status_code == 403
    assert _user_window_count(resident) == before


@pytest.mark.django_db
def test_refused_user_is_not_counted(resident, make_user):
    from backend.accounts import services
    from backend.accounts.models import User

    api = client_for(resident)
    assert api.get("/api/v1/me/wallet").status_code == 200
    before = _user_window_count(resident)
    services.user_set_status(user_id=resident.pk, status=User.Status.SUSPENDED, actor=make_user(role="admin"))
    assert api.get("/api/v1/me/wallet").status_code == 401
    assert _user_window_count(resident) == before
