"""/metrics tells the truth under gunicorn: every worker's counters added up (multiprocess mode), and the
ledger drift found by the nightly reconciliation (which runs in a Celery worker) read where it is scraped."""

import os
import re
import subprocess
import sys
import time

import pytest
import requests
from django.db import connection

from backend.ledger.models import ReconciliationRun
from tests.conftest import free_port, requires_postgres


def sample(text: str, name: str, **labels) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.django_db
def test_drift_gauge_is_read_from_the_latest_reconciliation(api, settings):
    settings.METRICS_TOKEN = "scrape-token"
    api.credentials(HTTP_AUTHORIZATION="Bearer scrape-token")
    assert sample(api.get("/metrics").content.decode(), "ledger_balance_drift_accounts") == -1
    from django.utils import timezone

    ReconciliationRun.objects.create(finished_at=timezone.now(), drift_count=3, drift=[{}, {}, {}])
    assert sample(api.get("/metrics").content.decode(), "ledger_balance_drift_accounts") == 3


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_gunicorn_workers_counters_add_up_in_multiprocess_mode(tmp_path):
    db = connection.settings_dict
    port = free_port()
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "METRICS_TOKEN": "scrape-token",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "backend.wsgi:application",
            "--config",
            "infra/gunicorn.conf.py",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "3",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "gunicorn.log", "w"),
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if requests.get(f"{base}/healthz").status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        with requests.Session() as client:  # Connection: close spreads the requests over the workers
            for _ in range(60):
                client.get(f"{base}/healthz", headers={"Connection": "close"})
        pids = {re.findall(r"\d+", f.name)[-1] for f in multiproc.iterdir()}
        assert len(pids) >= 2, "the requests should have reached more than one worker"
        for _ in range(5):  # whichever worker answers the scrape, it shows all of them
            text = requests.get(f"{base}/metrics", headers={"Authorization": "Bearer scrape-token"}).text
            healthz = sample(
                text, "django_http_responses_total_by_status_view_method_total", view="healthz", status="200"
            )
            assert healthz >= 61, text[:2000]
        assert sample(text, "ledger_balance_drift_accounts") == -1
    finally:
        server.terminate()
        server.wait(30)
