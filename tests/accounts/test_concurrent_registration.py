"""Registrations at the same moment: never a 500. On PostgreSQL one phone twice at once is one 201 and one 409;
on the embedded default (`make run`: SQLite file, runserver's threads) concurrent writes wait their turn."""

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.db import connection
from rest_framework.test import APIClient

from tests.conftest import PASSWORD, free_port, next_phone, requires_postgres

ROOT = Path(__file__).resolve().parents[2]


def registration(phone: str) -> dict:
    return {"phone": phone, "password": PASSWORD, "display_name": "并发", "district": "370202"}


@requires_postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("attempt", range(3))
def test_same_phone_twice_at_once_on_postgres_is_one_201_and_one_409(reference_data, attempt):
    phone = next_phone()
    barrier = threading.Barrier(2)
    statuses, lock = [], threading.Lock()

    def register():
        client = APIClient()
        barrier.wait()
        try:
            response = client.post("/api/v1/auth/register", registration(phone), format="json")
            with lock:
                statuses.append((response.status_code, response.json().get("errors", [{}])[0].get("code")))
        finally:
            connection.close()

    threads = [threading.Thread(target=register) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [(201, None), (409, "phone_taken")], statuses


def _post(url: str, payload: dict) -> tuple[int, str]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, ""
    except urllib.error.HTTPError as error:
        body = error.read().decode(errors="replace")
        try:
            return error.code, json.loads(body)["errors"][0]["code"]
        except (ValueError, KeyError, IndexError):
            return error.code, body[:200]


@pytest.fixture
def sqlite_server(tmp_path):
    """`make run` in miniature: a file SQLite database under its own LOCAL_DIR, runserver with its threads."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "PYTEST_XDIST_WORKER")}
    env.update(LOCAL_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="backend.settings", THROTTLE_ANON="100000/min")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True, capture_output=True
    )
    port = free_port()
    log = open(tmp_path / "runserver.log", "w")
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("runserver did not start: " + (tmp_path / "runserver.log").read_text()[-2000:])
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def test_concurrent_registrations_on_the_embedded_sqlite_never_fail(sqlite_server):
    url = sqlite_server + "/api/v1/auth/register"
    for round_number in range(3):
        phones = [f"1370{round_number}{i:06d}" for i in range(12)]
        phones.append(phones[0])  # and one number twice at once
        barrier = threading.Barrier(len(phones))
        results, lock = [], threading.Lock()

        def register(phone):
            barrier.wait()
            outcome = _post(url, registration(phone))
            with lock:
                results.append(outcome)

        threads = [threading.Thread(target=register, args=(phone,)) for phone in phones]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(results) == sorted([(201, "")] * 12 + [(409, "phone_taken")]), results
