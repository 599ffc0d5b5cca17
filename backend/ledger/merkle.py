"""Merkle trees over a day's ledger transactions (SHA-256, RFC 6962-style domain separation).

    leaf bytes  = canonical JSON of the transaction (see `leaf_bytes`), UTF-8, ASCII-escaped
    leaf hash   = SHA-256(0x00 || leaf bytes)
    node hash   = SHA-256(0x01 || left child hash || right child hash)
    odd node    = a level with an odd count carries its last hash up unchanged
    empty day   = SHA-256 of the empty string
Leaves are ordered by transaction id. A proof lists sibling hashes from the leaf upwards, each with the side
("left" or "right") the sibling sits on. This module has no Django dependency so it doubles as the reference
verifier.
"""

import hashlib
import json
from datetime import UTC, datetime


def leaf_bytes(*, txn_id: int, idempotency_key: str, effective_at: datetime, postings: list) -> bytes:
    """`postings` as [account_id, unit, currency, amount] lists; they are sorted here."""
    payload = {
        "id": txn_id,
        "idempotency_key": idempotency_key,
        "effective_at": effective_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "postings": sorted([int(a), str(u), str(c), int(n)] for a, u, c, n in postings),
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _next_level(level: list[bytes]) -> list[bytes]:
    nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
    if len(level) % 2:
        nxt.append(level[-1])
    return nxt


def merkle_root(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    level = leaves
    while len(level) > 1:
        level = _next_level(level)
    return level[0]


def merkle_levels(leaves: list[bytes]) -> list[list[bytes]]:
    """Every level of the tree, leaves first, root last (what is stored to answer proofs without a rebuild)."""
    levels = [leaves]
    while len(levels[-1]) > 1:
        levels.append(_next_level(levels[-1]))
    return levels


def proof_positions(index: int, leaf_count: int) -> list[tuple[int, int, str]]:
    """(level, position, side) of each sibling on the way from leaf `index` to the root of `leaf_count` leaves.
    A level with an odd count carries its last hash up unchanged, so that node has no sibling at that level."""
    steps = []
    level, width = 0, leaf_count
    while width > 1:
        sibling = index ^ 1
        if sibling < width:
            steps.append((level, sibling, "left" if sibling < index else "right"))
        index //= 2
        width = (width + 1) // 2
        level += 1
    return steps


def merkle_proof(leaves: list[bytes], index: int) -> list[dict]:
    proof = []
    level = leaves
    while len(level) > 1:
        sibling = index ^ 1
        if sibling < len(level):
            proof.append({"hash": level[sibling].hex(), "position": "left" if sibling < index else "right"})
        level = _next_level(level)
        index //= 2
    return proof


def merkle_verify(*, leaf: bytes, proof: list[dict], root_hex: str) -> bool:
    current = leaf_hash(leaf)
    for step in proof:
        sibling = bytes.fromhex(step["hash"])
        current = node_hash(sibling, current) if step["position"] == "left" else node_hash(current, sibling)
    return current.hex() == root_hex
