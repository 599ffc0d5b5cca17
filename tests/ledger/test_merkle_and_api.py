"""Merkle roots and proofs (verified by an independent verifier written from the published format), and the
resident-facing API."""

import hashlib
import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from backend.ledger import tasks
from backend.ledger.models import MerkleRoot
from backend.ledger.services import accounts_ensure, action_credits_post_bulk
from tests.conftest import client_for, requires_postgres
from tests.ledger.helpers import credit

pytestmark = [pytest.mark.django_db, requires_postgres]
SHANGHAI = ZoneInfo("Asia/Shanghai")


def verify(leaf: str, proof: list[dict], root: str) -> bool:
    """Independent verifier, written from the API schema description only."""
    current = hashlib.sha256(b"\x00" + leaf.encode()).digest()
    for step in proof:
        sibling = bytes.fromhex(step["hash"])
        pair = sibling + current if step["position"] == "left" else current + sibling
        current = hashlib.sha256(b"\x01" + pair).digest()
    return current.hex() == root


def yesterday():
    return datetime.now(SHANGHAI).date() - timedelta(days=1)


def post_yesterday(resident_id: int, n: int) -> list[int]:
    """Transactions created and booked yesterday (raw SQL: created_at is otherwise always now())."""
    # Carbon: no cached balance or lots to keep in step with these hand-written postings.
    accts = accounts_ensure(keys=[f"resident:{resident_id}:carbon", "system:carbon_issuance:bus_ride"])
    created = datetime.combine(yesterday(), datetime.min.time(), tzinfo=SHANGHAI) + timedelta(hours=12)
    ids = []
    with connection.cursor() as cur:
        for i in range(n):
            cur.execute(
                "INSERT INTO ledger_ledgertransaction (kind, reason, source_type, source_id, idempotency_key,"
                " content_hash, created_at, effective_at, booked_on) VALUES ('action_credit', 'Bus ride', 'action',"
                " %s, %s, '', %s, %s, %s) RETURNING id",
                [i, f"y:{resident_id}:{i}", created, created - timedelta(hours=1), yesterday()],
            )
            txn = cur.fetchone()[0]
            cur.execute(
                "INSERT INTO ledger_posting (transaction_id, account_id, unit, currency, amount)"
                " VALUES (%s, %s, 'carbon', '', %s), (%s, %s, 'carbon', '', %s)",
                [
                    txn,
                    accts[f"resident:{resident_id}:carbon"].id,
                    i + 1,
                    txn,
                    accts["system:carbon_issuance:bus_ride"].id,
                    -i - 1,
                ],
            )
            ids.append(txn)
    return ids


@pytest.mark.parametrize("count", [1, 2, 7])
def test_proofs_verify_offline_and_fail_after_tampering(make_user, count):
    resident, other = make_user(), make_user()
    mine = post_yesterday(resident.id, count)
    post_yesterday(other.id, 4)
    assert tasks.merkle_root_compute.delay().get() == tasks.merkle_root_compute.delay().get()  # safe twice
    roots = client_for(resident).get("/api/v1/public/ledger/roots").json()["results"]
    published = {r["day"]: r["root"] for r in roots}
    assert roots[0]["leaf_count"] == count + 4
    for txn_id in mine:
        body = client_for(resident).get(f"/api/v1/me/ledger/{txn_id}/proof").json()
        assert body["root"] == published[yesterday().isoformat()]
        assert verify(body["leaf"], body["proof"], body["root"])
        leaf = json.loads(body["leaf"])
        assert leaf["id"] == txn_id and leaf["idempotency_key"].startswith("y:")
        tampered = dict(leaf, postings=[[a, u, c, n + 1 if n > 0 else n - 1] for a, u, c, n in leaf["postings"]])
        assert not verify(json.dumps(tampered, sort_keys=True, separators=(",", ":")), body["proof"], body["root"])
        if body["proof"]:
            flipped = [dict(body["proof"][0], hash="00" * 32), *body["proof"][1:]]
            assert not verify(body["leaf"], flipped, body["root"])
    assert client_for(other).get(f"/api/v1/me/ledger/{mine[0]}/proof").status_code == 404


def test_ledger_verify_detects_tampering_behind_the_triggers(make_user):
    resident = make_user()
    post_yesterday(resident.id, 3)
    tasks.merkle_root_compute.delay().get()
    call_command("ledger_verify", verbosity=0)
    with connection.cursor() as cur:  # an attacker with superuser rights bypasses the immutability triggers
        cur.execute("SET LOCAL session_replication_role = replica")
        cur.execute("UPDATE ledger_ledgertransaction SET effective_at = effective_at + interval '1 day'")
        cur.execute("SET LOCAL session_replication_role = origin")
    with pytest.raises(CommandError, match="Merkle root"):
        call_command("ledger_verify", verbosity=0)
    assert MerkleRoot.objects.count() == 1


def test_proof_before_the_root_is_published_is_409(make_user):
    resident = make_user()
    ids = action_credits_post_bulk(credits=[credit(resident.id)])
    response = client_for(resident).get(f"/api/v1/me/ledger/{next(iter(ids.values()))}/proof")
    assert response.status_code == 409
    assert response.json()["errors"][0]["code"] == "proof_not_ready"


def test_wallet_and_ledger_show_only_my_entries_newest_first(make_user, django_assert_max_num_queries):
    me, other = make_user(), make_user()
    mine = [credit(me.id, points=10 + i) for i in range(5)]
    action_credits_post_bulk(credits=[*mine, credit(other.id, points=99)])
    action_credits_post_bulk(credits=[credit(me.id, points=5, pending=True)])
    client = client_for(me)
    wallet = client.get("/api/v1/me/wallet").json()
    assert wallet["points_balance"] == sum(10 + i for i in range(5))
    assert wallet["points_pending"] == 5 and wallet["carbon_g"] == 2500
    assert wallet["points_expiring"][0]["points"] == wallet["points_balance"]
    with django_assert_max_num_queries(8):
        page = client.get("/api/v1/me/ledger?page_size=4").json()
    assert len(page["results"]) == 4 and page["next"]
    entries = page["results"] + client.get(page["next"]).json()["results"]
    assert [e["id"] for e in entries] == sorted((e["id"] for e in entries), reverse=True)
    assert len(entries) == 6
    assert entries[0]["amounts"]["points_pending"] == 5
    # Within one batch ids follow idempotency-key order (the insert is sorted by key), not list order.
    first = next(e for e in entries if e["amounts"]["points"] == 10)
    assert first["amounts"] == {"carbon_g": 500, "carbon_pending_g": 0, "points": 10, "points_pending": 0}
    assert first["source"]["url"] == f"/api/v1/me/actions/{first['source']['id']}"
    assert first["reason"] == "Metro ride 8.2 km, 2026-11-24"
    assert client.get("/api/v1/me/wallet").status_code == 200
    assert client_for(other).get("/api/v1/me/ledger").json()["results"][0]["amounts"]["points"] == 99


@pytest.mark.parametrize("count", [5, 300])
def test_a_proof_reads_one_hash_per_level_not_the_whole_day(make_user, count, django_assert_num_queries):
    """The day's tree levels are stored with its root: a proof costs the same four queries (the transaction,
    its leaf with the root, the siblings, the postings) for 5 or 300 transactions, and still verifies."""
    from backend.ledger.selectors import transaction_proof

    resident = make_user()
    ids = post_yesterday(resident.id, count)
    tasks.merkle_root_compute.delay().get()
    for txn_id in (ids[0], ids[count // 2], ids[-1]):
        with django_assert_num_queries(4):
            proof = transaction_proof(resident_id=resident.id, transaction_id=txn_id)
        assert verify(proof["leaf"], proof["proof"], proof["root"])
        assert proof["leaf_count"] == count


def test_proof_of_a_root_stored_before_tree_levels_is_rebuilt_and_levels_backfilled(make_user):
    from backend.ledger.models import MerkleNode

    resident = make_user()
    ids = post_yesterday(resident.id, 6)
    tasks.merkle_root_compute.delay().get()
    MerkleNode.objects.all().delete()
    body = client_for(resident).get(f"/api/v1/me/ledger/{ids[3]}/proof").json()
    assert verify(body["leaf"], body["proof"], body["root"])
    call_command("ledger_root", "--day", yesterday().isoformat(), verbosity=0)  # a rerun stores the levels
    assert MerkleNode.objects.filter(level=0).count() == 6
    assert client_for(resident).get(f"/api/v1/me/ledger/{ids[3]}/proof").json() == body


def test_ledger_root_command_computes_a_day_on_demand_and_refuses_today(make_user, capsys):
    resident = make_user()
    post_yesterday(resident.id, 3)
    call_command("ledger_root", "--day", yesterday().isoformat())
    assert f"{yesterday()} root {MerkleRoot.objects.get().root} over 3 transaction(s)" in capsys.readouterr().out
    with pytest.raises(CommandError, match="day_not_finished"):
        call_command("ledger_root", "--day", (yesterday() + timedelta(days=1)).isoformat())
