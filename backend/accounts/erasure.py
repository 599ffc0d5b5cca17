"""PIPL erasure (删除权) in one place: which domain erases what, in which order, and what erasure leaves of every
model that points at a user.

`ERASURE_STEPS` names each domain's erasure function, run in this order inside the erasure transaction (no
registration from AppConfig.ready: the list is the whole story). `ERASURE_LEAVES` declares, for every foreign
key to the user, what is left of the rows it reaches, column by column. `tests/accounts/test_erasure.py` walks
every model with a foreign key to the user (`django.apps.apps.get_models`) and fails for a model, a foreign key
or a column that is not declared here, so a model added later (vouchers, statistics ...) cannot forget erasure.

What aggregates need stays: methodology, grams, points, quantities, the Asia/Shanghai day, and the district
only when the resident consented to statistics. Everything else is removed or generalised.
"""

from dataclasses import dataclass

from django.db import transaction
from django.utils.module_loading import import_string

# Each callable is `step(*, user, context)`, run in order. `context` is a dict the steps share (the accounts
# step records there whether the resident consented to statistics before consents are withdrawn).
ERASURE_STEPS = [
    "backend.accounts.services.account_erase_prepare",  # read consents before anything is withdrawn
    # Lock order across the steps: live vouchers and their limit rows, then daily cap rows, then ledger accounts,
    # then reward rows (rewards/locking.py, backend/actions/services.py `_pending_credits_undo`). The actions
    # step takes the resident's accounts, so the vouchers it would reach later are locked before it.
    "rewards.services.rewards_erase_lock",  # live vouchers and their limit rows (cancelled below)
    "backend.actions.services.actions_erase_personal_data",  # withdraw pending reports, strip actions, unbind
    "rewards.services.rewards_erase_personal_data",  # cancel live vouchers, drop merchant staff links
    "backend.offsets.services.offsets_erase_personal_data",  # release a buyer's unpaid reservations
    "backend.stats.services.stats_erase_personal_data",  # leave the leaderboards; district per consent
    "backend.accounts.services.account_erase_personal_data",  # the user row, consents, tokens, groups
]


@transaction.atomic
def erase_user(*, user) -> None:
    """Run every domain's erasure step for one (locked) user."""
    context: dict = {}
    for path in ERASURE_STEPS:
        import_string(path)(user=user, context=context)


# --- what erasure leaves ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Leaves:
    """What erasure leaves of one column. `rule` is one of:

    kept                 unchanged
    cleared              null, "" or {} (the column's empty value)
    set                  the fixed `value`
    set_at_erasure       the erasure time (or kept when it was already set, e.g. an earlier withdrawal)
    local_day            generalised to 00:00 Asia/Shanghai of its calendar day
    month                generalised to 00:00 Asia/Shanghai on the first of its month
    pseudonymised        replaced by a keyed hash (unique like the original, unlinkable without our key)
    statistics_consent   kept when the resident consented to statistics, otherwise cleared
    unusable_password    an unusable password hash
    withdrawn_if_pending `pending_review` / `flagged` become `rejected`; other values kept
    zero_if_withdrawn    0 for rows that were withdrawn (pending), otherwise kept
    false_if_withdrawn   False for rows that were withdrawn (pending): no longer waiting for review; else kept
    withdrawn_reason     `withdrawn_erasure` for rows that were withdrawn (pending), otherwise kept
    cap_given_back       kept, less what withdrawn actions had used (never more than before)
    reservations_given_back  the same actions; a withdrawn action's share of the cap becomes "0"
    cancelled_if_issued  a live (`issued`) voucher becomes `cancelled` (its points and stock go back); else kept
    closed_at_erasure_if_issued  the erasure time for vouchers cancelled by it; else kept
    released_if_reserved an unpaid (`reserved`) offset order becomes `released`; else kept
    released_at_if_reserved / release_reason_if_reserved  the erasure time / `account_erased` for those; else kept
    """

    rule: str
    value: object = None


KEPT = Leaves("kept")
CLEARED = Leaves("cleared")

# A record of what staff did (authored, decided, reviewed, logged in the admin): kept whole for accountability;
# a resident never appears in these columns.
STAFF_RECORD = "staff_record"

RESIDENT_ACTION_COLUMNS = {
    "id": KEPT,
    "resident": KEPT,  # the anonymised user row: the ledger's accounts are keyed by the same id
    "methodology": KEPT,
    "methodology_version": KEPT,
    "occurred_at": Leaves("local_day"),
    "data": CLEARED,  # station names, serials, shop receipts
    "status": Leaves("withdrawn_if_pending"),
    "evidence_share": KEPT,
    "grams": Leaves("zero_if_withdrawn"),
    "points": Leaves("zero_if_withdrawn"),
    "created_at": Leaves("local_day"),
    "source": KEPT,
    "partner": KEPT,
    "batch": KEPT,
    "external_id": Leaves("pseudonymised"),  # the partner's record id would re-identify through the partner
    "subject_kind": KEPT,
    "subject_hash": CLEARED,
    "subject_last4": CLEARED,
    "reason": Leaves("withdrawn_reason"),
    "breakdown": CLEARED,  # repeats the inputs
    "quantity": KEPT,
    "credited_quantity": KEPT,
    "capped_quantity": KEPT,
    "points_policy_version": KEPT,
    "evidence": CLEARED,  # the photo file is deleted too
    "processed_at": Leaves("local_day"),
    "reviewed_by": KEPT,
    "reviewed_at": Leaves("local_day"),
    "review_note": CLEARED,
    "needs_review": Leaves("false_if_withdrawn"),
}

# label -> foreign key name -> {"rows": "kept" | "deleted", "columns": {column: Leaves}} or STAFF_RECORD
ERASURE_LEAVES: dict[str, dict] = {
    "accounts.User": {
        "(the user row)": {
            "rows": "kept",
            "columns": {
                "id": KEPT,
                "password": Leaves("unusable_password"),
                "last_login": CLEARED,
                "is_superuser": Leaves("set", False),
                "phone_hash": CLEARED,
                "phone_encrypted": CLEARED,
                "phone_masked": CLEARED,
                "display_name": Leaves("set", "已注销用户"),
                "district": Leaves("statistics_consent"),
                "role": KEPT,
                "status": Leaves("set", "erased"),
                "is_active": Leaves("set", False),
                "date_joined": Leaves("month"),
                "erased_at": Leaves("set_at_erasure"),
            },
        }
    },
    "accounts.Consent": {
        "user": {
            "rows": "kept",  # the record that consent was given, and withdrawn, is the legal trail
            "columns": {
                "id": KEPT,
                "user": KEPT,
                "kind": KEPT,
                "version": KEPT,
                "granted_at": KEPT,
                "withdrawn_at": Leaves("set_at_erasure"),
            },
        }
    },
    "accounts.User_groups": {"user": {"rows": "deleted", "columns": {}}},
    "accounts.User_user_permissions": {"user": {"rows": "deleted", "columns": {}}},
    "token_blacklist.OutstandingToken": {
        "user": {
            "rows": "kept",  # each one blacklisted; simplejwt's flushexpiredtokens removes them after expiry
            "columns": {"id": KEPT, "user": KEPT, "jti": KEPT, "token": KEPT, "created_at": KEPT, "expires_at": KEPT},
        }
    },
    "admin.LogEntry": {"user": STAFF_RECORD},
    "methodologies.MethodologyVersion": {
        "author": STAFF_RECORD,
        "decided_by": STAFF_RECORD,
        "retire_requested_by": STAFF_RECORD,
    },
    "methodologies.PointsPolicyVersion": {
        "author": STAFF_RECORD,
        "decided_by": STAFF_RECORD,
        "retire_requested_by": STAFF_RECORD,
    },
    "methodologies.VersionTransition": {"actor": STAFF_RECORD},
    "methodologies.ImpactPreview": {"requested_by": STAFF_RECORD},
    "actions.SubjectBinding": {"resident": {"rows": "deleted", "columns": {}}},
    "actions.LinkCode": {"resident": {"rows": "deleted", "columns": {}}},
    # Exact trip times and weighing windows; an erased account earns nothing more, so there is nothing left
    # for them to guard. (HistoryClaim keys name a serial or a biller month, not a person: kept.)
    "actions.PeriodClaim": {"resident": {"rows": "deleted", "columns": {}}},
    "actions.Action": {
        "resident": {"rows": "kept", "columns": RESIDENT_ACTION_COLUMNS},
        "reviewed_by": STAFF_RECORD,
    },
    "actions.ActionStatusChange": {"actor": STAFF_RECORD},
    "stats.ResidentDay": {
        "resident": {
            "rows": "kept",  # pseudonymous per-day sums the published aggregates are reproduced from
            "columns": {
                "id": KEPT,
                "day": KEPT,
                "month": KEPT,
                "resident": KEPT,
                "district": Leaves("statistics_consent"),
                "methodology": KEPT,
                "source": KEPT,
                "actions": KEPT,
                "grams": KEPT,
                "points": KEPT,
                "points_redeemed": KEPT,
                "quantity": KEPT,
            },
        }
    },
    "stats.LeaderboardPreference": {"user": {"rows": "deleted", "columns": {}}},
    "rewards.Voucher": {
        "resident": {
            "rows": "kept",  # settlement records: what a merchant is paid for; no personal data but the link
            "columns": {
                "id": KEPT,
                "code": KEPT,
                "reward": KEPT,
                "merchant": KEPT,
                "resident": KEPT,
                "idempotency_key": KEPT,
                "request_hash": KEPT,
                "points_cost": KEPT,
                "face_value_minor": KEPT,
                "currency": KEPT,
                "limit_period_key": KEPT,
                "stock_taken": KEPT,
                "status": Leaves("cancelled_if_issued"),
                "issued_at": KEPT,
                "expires_at": KEPT,
                "redeemed_at": KEPT,
                "redeemed_by": KEPT,
                "closed_at": Leaves("closed_at_erasure_if_issued"),
            },
        },
        "redeemed_by": STAFF_RECORD,
    },
    "rewards.RewardLimitUsage": {
        "resident": {
            "rows": "kept",  # counts per period, no personal data
            "columns": {"id": KEPT, "reward": KEPT, "resident": KEPT, "period_key": KEPT, "count": KEPT},
        }
    },
    "rewards.MerchantStaff": {"user": {"rows": "deleted", "columns": {}}},
    # A buyer is a company: its name, credit code, orders and certificates (public records) are kept.
    "offsets.Buyer": {
        "user": {
            "rows": "kept",
            "columns": {"user": KEPT, "company_name": KEPT, "tax_id": KEPT, "created_at": KEPT},
        }
    },
    "offsets.OffsetOrder": {
        "buyer": {
            "rows": "kept",
            "columns": {
                **{
                    name: KEPT
                    for name in (
                        "id",
                        "buyer",
                        "batch",
                        "quantity_kg",
                        "price_cny_per_t",
                        "amount_fen",
                        "currency",
                        "idempotency_key",
                        "payment_intent_id",
                        "client_secret",
                        "created_at",
                        "reserved_until",
                        "paid_at",
                        "refund_seen_at",
                        "refunded_at",
                        "payment_txn_id",
                        "refund_shortfall_fen",
                    )
                },
                "status": Leaves("released_if_reserved"),
                "released_at": Leaves("released_at_if_reserved"),
                "release_reason": Leaves("release_reason_if_reserved"),
            },
        }
    },
    "offsets.Certificate": {
        "buyer": {
            "rows": "kept",
            "columns": {
                name: KEPT
                for name in (
                    "id",
                    "order",
                    "buyer",
                    "code",
                    "company_name",
                    "tax_id",
                    "quantity_kg",
                    "serial_ranges",
                    "methodologies",
                    "status",
                    "issued_at",
                    "revoked_at",
                )
            },
        }
    },
    "offsets.CertificationBatch": {"created_by": STAFF_RECORD},
    "offsets.Settlement": {"manual_paid_by": STAFF_RECORD},  # who recorded a payment made by hand
    "actions.DailyCapUsage": {
        "resident": {
            "rows": "kept",  # per-day totals: what the caps and the statistics add up
            "columns": {
                "id": KEPT,
                "resident": KEPT,
                "methodology": KEPT,
                "day": KEPT,
                "used": Leaves("cap_given_back"),
                "reservations": Leaves("reservations_given_back"),
            },
        }
    },
}
