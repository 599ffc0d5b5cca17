import os
import shutil
import socket
import subprocess
import time

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from backend.accounts.services import user_create, user_register

PASSWORD = "Gr33n-Travel!"


def pytest_collection_modifyitems(config, items):
    # The suite is meant to run against PostgreSQL + Redis (`make test`); say so loudly when it is not.
    if not os.environ.get("DATABASE_URL"):
        print("\nWARNING: DATABASE_URL not set: running on SQLite; PostgreSQL-only tests are skipped.")


@pytest.fixture(autouse=True)
def _clean_cache():
    """Each test starts with an empty cache (only this xdist worker's keys: the prefix is per worker)."""
    if hasattr(cache, "delete_pattern"):
        cache.delete_pattern("*")
    else:
        cache.clear()
    yield


@pytest.fixture
def api():
    return APIClient()


_phone_counter = iter(range(10_000_000))


def next_phone() -> str:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or "0"
    return f"139{int(worker) % 10}{next(_phone_counter):07d}"


@pytest.fixture
def reference_data(db):
    """Reference rows from data migrations. Transactional tests flush the database afterwards, so the next test
    may find them gone: put them back (idempotent, one query when present)."""
    from backend.core.seeding import SEEDERS

    for _name, seeder in SEEDERS:
        seeder()


@pytest.fixture
def make_user(reference_data):
    def make(role="resident", phone=None, partner_data_consent=True, **extra):
        phone = phone or next_phone()
        if role == "resident":
            user = user_register(
                phone=phone,
                password=PASSWORD,
                display_name=extra.pop("display_name", "居民"),
                district=extra.pop("district", "370202"),
                partner_data_consent=partner_data_consent,
            )
        else:
            user = user_create(phone=phone, password=PASSWORD, role=role, **extra)
        user.raw_phone = phone
        return user

    return make


@pytest.fixture
def resident(make_user):
    return make_user()


@pytest.fixture
def reviewer(make_user):
    return make_user(role="reviewer")


def client_for(user) -> APIClient:
    from rest_framework_simplejwt.tokens import RefreshToken

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
    return client


@pytest.fixture
def resident_client(resident):
    return client_for(resident)


@pytest.fixture
def reviewer_client(reviewer):
    return client_for(reviewer)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def throwaway_redis(tmp_path):
    """A real Redis server of the test's own, so a test may stop it without touching the shared one."""
    binary = shutil.which("redis-server")
    if not binary:
        pytest.skip("redis-server not installed")
    import redis

    port = free_port()

    class Handle:
        """start()/stop() may be called repeatedly: the same port, so clients reconnect to the new server."""

        url = f"redis://127.0.0.1:{port}/0"
        proc: subprocess.Popen | None = None

        @classmethod
        def start(cls):
            cls.proc = subprocess.Popen(
                [
                    binary,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(tmp_path),
                ],
                stdout=subprocess.DEVNULL,
            )
            client = redis.Redis(port=port)
            for _ in range(100):
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    time.sleep(0.05)

        @classmethod
        def stop(cls):
            if cls.proc and cls.proc.poll() is None:
                cls.proc.terminate()
                cls.proc.wait(10)

    Handle.start()
    yield Handle
    Handle.stop()


requires_postgres = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="needs PostgreSQL (make test)"
)


@pytest.fixture(autouse=True)
def _celery_mode(request):
    """Unit tests run tasks in-process; tests that take the `celery_worker` fixture talk to a real worker."""
    from celery._state import _set_task_join_will_block

    from backend.celery import app

    app.conf.task_always_eager = "celery_worker" not in request.fixturenames
    yield
    app.conf.task_always_eager = False
    # Celery's Task.apply() sets a process-wide "joining would block" flag while an eager task runs and restores
    # what it saw on entry: two threads applying at once (the race tests) can leave it set, and every later
    # `.apply().get()` in this xdist worker then fails with "Never call result.get() within a task!".
    _set_task_join_will_block(False)


class CeleryWorker:
    """A real `celery worker` process on this xdist worker's own queue, against the Redis broker and the
    test database. Tests that use it must commit their data (`django_db(transaction=True)`)."""

    def __init__(self, env: dict, queue: str, log_path):
        self.env, self.queue, self.log_path = env, queue, log_path
        self.proc: subprocess.Popen | None = None

    def start(self, concurrency: int = 1) -> "CeleryWorker":
        from pathlib import Path

        root = Path(__file__).resolve().parents[1]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [
                str(root / ".venv" / "bin" / "celery"),
                "-A",
                "backend",
                "worker",
                "-Q",
                self.queue,
                "--concurrency",
                str(concurrency),
                "--pool",
                "prefork",
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=root,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self.wait_ready()
        except Exception:
            self.stop()  # never leave a half-started worker behind to steal later tests' tasks
            raise
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        from backend.core.tasks import heartbeat

        key = f"heartbeat:test:{os.getpid()}:{time.monotonic()}"
        heartbeat.apply_async(kwargs={"key": key}, queue=self.queue)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cache.get(key):
                return
            if self.proc and self.proc.poll() is not None:
                raise RuntimeError(f"celery worker exited early, see {self.log_path}")
            time.sleep(0.1)
        raise TimeoutError(f"celery worker not ready, see {self.log_path}")

    def kill(self, sig=None) -> None:
        """SIGKILL the whole worker process group (main process and its pool children), like a lost machine."""
        import signal

        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig or signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        import signal

        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def celery_worker(transactional_db, tmp_path, settings):
    """Start a real Celery worker for this test (see CeleryWorker); stopped afterwards."""
    if not settings.REDIS_URL:
        pytest.skip("needs Redis (make test)")
    from django.db import connection

    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CELERY_TASK_ALWAYS_EAGER": "false",
    }
    worker = CeleryWorker(env, settings.CELERY_TASK_DEFAULT_QUEUE, tmp_path / "celery-worker.log")
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture
def seeded(reference_data):
    """Reference data plus the seeded methodology catalogue and points policy (idempotent)."""
    return True


@pytest.fixture
def partner_factory(seeded):
    from backend.partners.services import partner_create

    counter = iter(range(1_000_000))

    def make(methodologies=("bus_ride", "metro_ride", "bike_ride", "recycling", "walk_steps"), name=None):
        partner, secret = partner_create(
            name=name or f"partner-{os.getpid()}-{next(counter)}-{time.monotonic_ns()}",
            methodologies=list(methodologies),
        )
        partner.secret = secret
        return partner

    return make


@pytest.fixture
def partner(partner_factory):
    return partner_factory()
