"""Ledger API: the resident's wallet and transactions, inclusion proofs, and the public Merkle roots."""

from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.core.fields import datetime_text
from backend.ledger import selectors
from backend.ledger.models import LedgerTransaction

LEAF_FORMAT = """
**Verifying offline.** Leaves are the day's ledger transactions (those with `booked_on` that Asia/Shanghai day:
the day a transaction was posted, or for imported history the past day it happened), ordered by transaction id.
`leaf` is the exact leaf serialisation: JSON with keys sorted, no whitespace (separators `,` and `:`),
non-ASCII escaped as `\\uXXXX`:
`{"effective_at":"2026-11-24T02:00:00.000000Z","id":123,"idempotency_key":"action:1","postings":[[account_id,"unit","currency",amount],...]}`
with `effective_at` in UTC with microseconds and postings sorted (by account id, unit, currency, amount;
currency is "" except for money).
`leaf_hash = SHA-256(0x00 || leaf)`; a parent is `SHA-256(0x01 || left || right)`; on a level with an odd
number of hashes the last one moves up unchanged. Start from `leaf_hash`; for each proof step, hash
`0x01 || step.hash || current` when `position` is `left`, else `0x01 || current || step.hash`. The result
must equal the day's `root` published at `GET /api/v1/public/ledger/roots`.
"""


class WalletExpiringSerializer(serializers.Serializer):
    expires_on = serializers.DateField(help_text="Last day (Asia/Shanghai) the points can be spent.")
    expires_at = serializers.DateTimeField()
    points = serializers.IntegerField()


class WalletSerializer(serializers.Serializer):
    carbon_g = serializers.IntegerField(help_text="Grams CO2e credited (net of reversals).")
    carbon_pending_g = serializers.IntegerField(help_text="Grams CO2e waiting for review.")
    points_balance = serializers.IntegerField(help_text="Spendable points.")
    points_pending = serializers.IntegerField(help_text="Points waiting for review: visible, not spendable.")
    points_lifetime = serializers.IntegerField(help_text="Points earned ever (net of reversed credits).")
    points_expiring = WalletExpiringSerializer(many=True, help_text="The next expiring amounts, soonest first.")

    def to_representation(self, wallet) -> dict:
        """The declared fields, written out like the list items (tests/core/test_read_serializers.py compares it
        with DRF's generic walk, to the rendered bytes): the generic walk deep-copied 15 fields per request."""
        return {
            "carbon_g": int(wallet["carbon_g"]),
            "carbon_pending_g": int(wallet["carbon_pending_g"]),
            "points_balance": int(wallet["points_balance"]),
            "points_pending": int(wallet["points_pending"]),
            "points_lifetime": int(wallet["points_lifetime"]),
            "points_expiring": [
                {
                    "expires_on": DATE.to_representation(e["expires_on"]),
                    "expires_at": DATETIME.to_representation(e["expires_at"]),
                    "points": int(e["points"]),
                }
                for e in wallet["points_expiring"]
            ],
        }


class LedgerAmountsSerializer(serializers.Serializer):
    carbon_g = serializers.IntegerField()
    carbon_pending_g = serializers.IntegerField()
    points = serializers.IntegerField()
    points_pending = serializers.IntegerField()


class LedgerSourceSerializer(serializers.Serializer):
    type = serializers.CharField()
    id = serializers.IntegerField(allow_null=True)
    url = serializers.CharField(allow_null=True, help_text="The source in this API, when it has one.")


class LedgerEntrySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    reason = serializers.CharField()
    created_at = serializers.DateTimeField()
    effective_at = serializers.DateTimeField()
    booked_on = serializers.DateField(help_text="The Asia/Shanghai day whose Merkle root holds this transaction.")
    amounts = serializers.SerializerMethodField()
    source = serializers.SerializerMethodField()
    reverses = serializers.IntegerField(source="reverses_id", allow_null=True)
    proof_url = serializers.SerializerMethodField()

    @extend_schema_field(LedgerAmountsSerializer)
    def get_amounts(self, txn) -> dict:
        return txn.resident_amounts  # selectors.resident_amounts_attach

    @extend_schema_field(LedgerSourceSerializer)
    def get_source(self, txn) -> dict:
        url = f"/api/v1/me/actions/{txn.source_id}" if txn.source_type == "action" and txn.source_id else None
        return {"type": txn.source_type, "id": txn.source_id, "url": url}

    def get_proof_url(self, txn) -> str:
        return f"/api/v1/me/ledger/{txn.id}/proof"

    def to_representation(self, txn) -> dict:
        """The declared fields, written out: DRF's generic field walk was most of a page's CPU. Same output
        (tests/ledger/test_read_serializers.py compares it with the generic path)."""
        return {
            "id": int(txn.id),
            "kind": str(txn.kind),
            "reason": str(txn.reason),
            "created_at": DATETIME.to_representation(txn.created_at),
            "effective_at": DATETIME.to_representation(txn.effective_at),
            "booked_on": DATE.to_representation(txn.booked_on),
            "amounts": self.get_amounts(txn),
            "source": self.get_source(txn),
            "reverses": None if txn.reverses_id is None else int(txn.reverses_id),
            "proof_url": self.get_proof_url(txn),
        }


DATETIME = serializers.DateTimeField()  # stateless: formats in the active time zone like a declared field
DATE = serializers.DateField()


class WalletView(APIView):
    @extend_schema(
        operation_id="me_wallet",
        responses={200: WalletSerializer},
        examples=[
            OpenApiExample(
                "wallet",
                value={
                    "carbon_g": 12500,
                    "carbon_pending_g": 800,
                    "points_balance": 340,
                    "points_pending": 80,
                    "points_lifetime": 1250,
                    "points_expiring": [
                        {"expires_on": "2027-11-30", "expires_at": "2027-11-30T16:00:00Z", "points": 120}
                    ],
                },
                response_only=True,
            )
        ],
    )
    def get(self, request):
        """My carbon and points: credited carbon, spendable, pending and lifetime points, next expiries."""
        return Response(WalletSerializer(selectors.wallet_get(resident_id=request.user.id)).data)


def ledger_entry_writer():
    """A function writing one ledger page row as LedgerEntrySerializer does (same keys, same bytes: tests/core/
    test_keyset_pages.py compares them), with the active time zone read once per page."""
    tz = timezone.get_current_timezone()

    def write(id, kind, reason, created_at, effective_at, booked_on, source_type, source_id, reverses_id, amounts):
        return {
            "id": id,
            "kind": kind,
            "reason": reason,
            "created_at": datetime_text(created_at, tz),
            "effective_at": datetime_text(effective_at, tz),
            "booked_on": booked_on.isoformat(),
            "amounts": amounts,
            "source": {
                "type": source_type,
                "id": source_id,
                "url": f"/api/v1/me/actions/{source_id}" if source_type == "action" and source_id else None,
            },
            "reverses": reverses_id,
            "proof_url": f"/api/v1/me/ledger/{id}/proof",
        }

    return write


class LedgerListView(ListAPIView):
    serializer_class = LedgerEntrySerializer  # the schema; a page is written by ledger_entry_writer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user, maybe no database
            return LedgerTransaction.objects.none()
        return selectors.resident_transaction_rows(resident_id=self.request.user.id, write=ledger_entry_writer())

    @extend_schema(operation_id="me_ledger_list")
    def get(self, request, *args, **kwargs):
        """My ledger transactions, newest first (cursor-paginated), with reason, amounts per unit and source."""
        # One statement for the page, rows written out as they come (no model, no serializer walk per row).
        return self.get_paginated_response(self.paginate_queryset(self.get_queryset()))


class ProofStepSerializer(serializers.Serializer):
    hash = serializers.CharField(help_text="Sibling hash, hex.")
    position = serializers.ChoiceField(choices=["left", "right"], help_text="Side the sibling sits on.")


class LedgerProofSerializer(serializers.Serializer):
    transaction_id = serializers.IntegerField()
    day = serializers.DateField()
    leaf = serializers.CharField(help_text="The exact leaf bytes (UTF-8) that are hashed.")
    leaf_hash = serializers.CharField()
    index = serializers.IntegerField()
    leaf_count = serializers.IntegerField()
    proof = ProofStepSerializer(many=True)
    root = serializers.CharField()


class LedgerProofView(APIView):
    @extend_schema(operation_id="me_ledger_proof", responses={200: LedgerProofSerializer}, description=LEAF_FORMAT)
    def get(self, request, transaction_id: int):
        """Inclusion proof of one of my transactions in its day's published Merkle root. 404 for anyone else's
        transaction; 409 `proof_not_ready` before the day's root is computed (after the day ends)."""
        proof = selectors.transaction_proof(resident_id=request.user.id, transaction_id=transaction_id)
        return Response(LedgerProofSerializer(proof).data)


class MerkleRootSerializer(serializers.Serializer):
    day = serializers.DateField()
    root = serializers.CharField(help_text="SHA-256 Merkle root, hex.")
    leaf_count = serializers.IntegerField()
    computed_at = serializers.DateTimeField()


class PublicRootsView(ListAPIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []
    serializer_class = MerkleRootSerializer

    def get_queryset(self):
        return selectors.merkle_roots()

    @extend_schema(operation_id="public_ledger_roots", description=LEAF_FORMAT)
    def get(self, request, *args, **kwargs):
        """Published daily Merkle roots of the ledger, newest day first."""
        return super().get(request, *args, **kwargs)
