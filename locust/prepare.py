"""Before a load run: register and log in the residents the Locust users act as (not part of the measurement:
Argon2 is deliberately slow). Writes their tokens to a JSON file the locustfile reads."""

import argparse
import json
import random
import subprocess
import sys
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
        session.post(
            f"{a.host}/api/v1/me/bindings",
            json={"kind": "transit_card", "identifier": card},
            headers={"Authorization": f"Bearer {tokens.json()['access']}"},
            timeout=30,
        )
        users.append({"phone": phone, "card": card, **tokens.json()})
    # The partner persona signs with a partner of its own, created by the operators' command.
    created = subprocess.run(
        [
            sys.executable,
            str(ROOT / "manage.py"),
            "create_partner",
            "--name",
            f"load-{run:04d}-{random.random()}",
            "--methodologies",
            "bus_ride,metro_ride",
            "--json",
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    partner = json.loads(created.stdout.strip().splitlines()[-1])
    with open(a.out, "w") as fh:
        json.dump({"residents": users, "partner": partner}, fh)
    print(f"prepared {len(users)} residents and partner {partner['partner_id']}")


if __name__ == "__main__":
    main()
