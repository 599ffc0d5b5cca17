"""Subject identifiers (cards, accounts, receipts) are personal data: matched by keyed hash, shown by last 4."""

from backend.core.crypto import keyed_hash


def normalize_identifier(identifier: str) -> str:
    return "".join(str(identifier).split()).upper()


def subject_hash(kind: str, identifier: str) -> str:
    return keyed_hash(f"subject:{kind}", normalize_identifier(identifier))


def subject_last4(identifier: str) -> str:
    return normalize_identifier(identifier)[-4:]
