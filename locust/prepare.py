"""Before a load run: register and log in the residents the Locust users act as (not part of the measurement:
Argon2 is deliberately slow), link each one's transit card the way production does (a link code the resident
gets, confirmed by the partner with a signed request), give them points (through the ledger services), and
create a merchant with a cashier login and a few rewards (through the merchant API). Writes tokens and ids to a
JSON file the locustfile reads."""

import argparse
import hashlib
import hmac
import json
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--residents", type=int, default=40)
    a = ap.parse_args()
    # Imported here, not at the top: the locustfile imports this module for `partner_headers`, and requests
    # (ssl) must not be imported before Locust's gevent monkey-patching.
    import requests

    session = requests.Session()
    run = random.randint(0, 9999)
    # The partner persona signs with a partner of its own, created by the operators' command; it also attests
    # the residents' card links.
    created = subprocess.run(
        [
            sys.executable,
            str(ROOT / "manage.py"),
            "create_partner",
            "--name",
            f"load-{run:04d}-{random.random()}",
            "--methodologies",
            "bus_ride,metro_ride",
            "--subject-kinds",
            "transit_card",
            "--json",
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    partner = json.loads(created.stdout.strip().splitlines()[-1])
    users = []
    for i in range(a.residents):
        phone = f"137{run:04d}{i:04d}"
        password = "Load-Test-Pass-1"
        session.post(
            f"{a.host}/api/v1/auth/register",
            json={
                "phone": phone,
                "password": password,
                "display_name": f"load{i}",
                "district": "370202",
                "partner_data_consent": True,
            },
            timeout=30,
        )
        tokens = session.post(f"{a.host}/api/v1/auth/token", json={"phone": phone, "password": password}, timeout=30)
        tokens.raise_for_status()
        card = f"LOAD-{run:04d}-{i:04d}"
        code = session.post(
            f"{a.host}/api/v1/me/link-codes",
            json={"kind": "transit_card"},
            headers={"Authorization": f"Bearer {tokens.json()['access']}"},
            timeout=30,
        )
        code.raise_for_status()
        linked = partner_request(
            session,
            a.host,
            partner,
            "POST",
            "/api/v1/partner/links",
            {"code": code.json()["code"], "subject": {"kind": "transit_card", "identifier": card}},
        )
        linked.raise_for_status()
        users.append({"phone": phone, "card": card, **tokens.json()})
    for user in users:
        me = session.get(f"{a.host}/api/v1/me", headers={"Authorization": f"Bearer {user['access']}"}, timeout=30)
        user["id"] = me.json()["id"]
    give_points([u["id"] for u in users], points=1_000_000, run=run)
    merchant = prepare_merchant(session, a.host, run)
    reviewer = prepare_reviewer(session, a.host, run)
    with open(a.out, "w") as fh:
        json.dump({"residents": users, "partner": partner, "merchant": merchant, "reviewer": reviewer}, fh)
    print(
        f"prepared {len(users)} residents, partner {partner['partner_id']}, merchant {merchant['merchant_id']}, "
        f"reviewer {reviewer['user_id']}"
    )


def give_points(resident_ids: list[int], *, points: int, run: int) -> None:
    """Credit the residents through the ledger services (the same database as the stack)."""
    import os
    from datetime import UTC, datetime

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")
    import django

    django.setup()
    from backend.ledger.services import ActionCredit, action_credits_post_bulk

    now = datetime.now(UTC)
    action_credits_post_bulk(
        credits=[
            ActionCredit(
                idempotency_key=f"load-points:{run}:{rid}",
                resident_id=rid,
                methodology="metro_ride",
                grams=0,
                points=points,
                reason="load test",
                source_type="load",
                source_id=rid,
                effective_at=now,
            )
            for rid in resident_ids
        ]
    )


def prepare_merchant(session, host: str, run: int) -> dict:
    """A merchant (operators' command) whose manager lists three rewards through the merchant API."""
    phone, password = f"136{run:04d}0000", "Load-Test-Pass-1"
    created = subprocess.run(
        [
            sys.executable,
            str(ROOT / "manage.py"),
            "create_merchant",
            "--name",
            f"load-{run:04d}-{random.random()}",
            "--district",
            "370202",
            "--staff-phone",
            phone,
            "--staff-password",
            password,
            "--json",
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    merchant = json.loads(created.stdout.strip().splitlines()[-1])
    tokens = session.post(f"{host}/api/v1/auth/token", json={"phone": phone, "password": password}, timeout=30)
    tokens.raise_for_status()
    headers = {"Authorization": f"Bearer {tokens.json()['access']}"}
    rewards = []
    for i, (cost, stock) in enumerate([(100, 1_000_000), (500, 1_000_000), (50, None)]):
        body = {"title_zh": f"负载奖励{i}", "points_cost": cost, "stock": stock, "face_value_minor": cost * 10}
        response = session.post(f"{host}/api/v1/merchant/rewards", json=body, headers=headers, timeout=30)
        response.raise_for_status()
        rewards.append(response.json()["id"])
    return {**merchant, "access": tokens.json()["access"], "rewards": rewards}


def prepare_reviewer(session, host: str, run: int) -> dict:
    """A reviewer (operators' command `create_user --role reviewer`) and its access token."""
    phone, password = f"135{run:04d}0000", "Load-Test-Pass-1"
    created = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "create_user", "--role", "reviewer", "--phone", phone,
         "--password", password, "--display-name", f"reviewer-{run:04d}"],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )  # fmt: skip
    user = json.loads(created.stdout.strip().splitlines()[-1])
    tokens = session.post(f"{host}/api/v1/auth/token", json={"phone": phone, "password": password}, timeout=30)
    tokens.raise_for_status()
    return {"user_id": user["user_id"], "access": tokens.json()["access"]}


def partner_headers(partner_id, secret: str, body: bytes) -> dict:
    """The signed partner headers of one request (signature v1: lowercase hex HMAC-SHA256(secret,
    "{timestamp}.{nonce}." + raw body), the same as backend.partners.services.signature_compute). The one copy
    every load test and benchmark signs with (prepare.py, locustfile.py, bench_ingest.py, bench_capacity.py)."""
    timestamp, nonce = str(int(time.time())), uuid.uuid4().hex
    signature = hmac.new(secret.encode(), f"{timestamp}.{nonce}.".encode() + body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-Partner-Id": str(partner_id),
        "X-Timestamp": timestamp,
        "X-Nonce": nonce,
        "X-Signature": signature,
    }


def partner_request(session, host: str, partner: dict, method: str, path: str, payload: dict):
    """A request signed with the partner's secret."""
    body = json.dumps(payload).encode()
    headers = partner_headers(partner["partner_id"], partner["secret"], body)
    return session.request(method, host + path, data=body, headers=headers, timeout=30)


if __name__ == "__main__":
    main()
