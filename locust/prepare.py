"""Before a load run: register and log in the residents the Locust users act as (not part of the measurement:
Argon2 is deliberately slow) and link each one's transit card the way production does (a link code the
resident gets, confirmed by the partner with a signed request). Writes tokens to a JSON file the locustfile
reads."""

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

import requests

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--residents", type=int, default=40)
    a = ap.parse_args()
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
    with open(a.out, "w") as fh:
        json.dump({"residents": users, "partner": partner}, fh)
    print(f"prepared {len(users)} residents and partner {partner['partner_id']}")


def partner_request(session, host: str, partner: dict, method: str, path: str, payload: dict):
    """A request signed with the partner's secret (v1: HMAC-SHA256 of "{timestamp}.{nonce}." + body)."""
    body = json.dumps(payload).encode()
    timestamp, nonce = str(int(time.time())), uuid.uuid4().hex
    signature = hmac.new(
        partner["secret"].encode(), f"{timestamp}.{nonce}.".encode() + body, hashlib.sha256
    ).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-Partner-Id": str(partner["partner_id"]),
        "X-Timestamp": timestamp,
        "X-Nonce": nonce,
        "X-Signature": signature,
    }
    return session.request(method, host + path, data=body, headers=headers, timeout=30)


if __name__ == "__main__":
    main()
