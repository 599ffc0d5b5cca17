"""Which error codes each operation can answer, for the schema (see backend/core/schema.py).

GENERIC_CODES are what the framework answers for any operation with that status. OPERATION_ERRORS adds each
operation's domain codes (raised by the services it calls) by status. A code missing here still reaches the
client in the one error shape; it is just not in the operation's enum, so keep this current with the services
(tests/core/test_settings_and_schema.py checks every operation id named here exists)."""

STATUS_TYPES = {
    400: ["client_error", "validation_error"],
    401: ["client_error"],
    403: ["client_error"],
    404: ["client_error"],
    405: ["client_error"],
    409: ["client_error"],
    413: ["client_error"],
    415: ["client_error"],
    422: ["client_error"],
    429: ["client_error"],
    500: ["server_error"],
    503: ["server_error"],
}

# DRF's validation codes (serializer fields) and the request parser's.
VALIDATION_CODES = [
    "blank",
    "does_not_exist",
    "empty",
    "invalid",
    "invalid_choice",
    "max_digits",
    "max_decimal_places",
    "max_length",
    "max_string_length",
    "max_value",
    "max_whole_digits",
    "min_length",
    "min_value",
    "not_a_dict",
    "not_a_list",
    "null",
    "parse_error",
    "required",
    "json_too_deep",
    "unique",
]

GENERIC_CODES = {
    400: VALIDATION_CODES,
    401: ["authentication_failed", "not_authenticated", "token_not_valid"],
    403: ["permission_denied"],
    404: ["not_found"],
    405: ["method_not_allowed"],
    413: ["request_too_large"],
    415: ["unsupported_media_type"],
    429: ["throttled"],
    500: ["server_error"],
    503: ["retry"],  # writes: a deadlock or serialization failure rolled the transaction back; send it again
}

# Signed partner endpoints (backend/partners/services.py signed_request_verify, partner_nonce_record).
PARTNER_AUTH = {
    401: ["partner_unknown", "signature_expired", "signature_invalid", "signature_version_not_allowed",
          "signature_version_unsupported"],
    403: ["partner_suspended"],
    409: ["nonce_reused"],
}
# The engine's action-data codes (engine.parse_action_data) and validity reasons (engine.check_validity).
ACTION_DATA_CODES = ["implausible_amount", "invalid_number", "invalid_string", "negative", "required",
                     "too_many_digits", "unknown_material"]
VALIDITY_CODES = ["count_out_of_range", "distance_out_of_range", "duration_missing", "duration_too_short",
                  "e_invoice_missing", "energy_label_insufficient", "energy_label_missing", "energy_out_of_range",
                  "mass_out_of_range", "no_reduction", "same_station", "speed_implausible", "steps_out_of_range"]
# Governed versions (backend/methodologies/services.py): draft edits, submit, decide, retire.
VERSION_CONTENT = ["effective_from_required", "invalid", "negative_factor"]
VERSION_ERRORS = {
    "create": {400: ["version_not_found"]},
    "update": {400: [*VERSION_CONTENT, "not_editable"], 403: ["not_author"], 409: ["version_not_draft"]},
    "submit": {
        400: VERSION_CONTENT,
        403: ["not_author"],
        409: ["effective_from_not_after_active", "version_not_draft"],
    },
    "approve": {403: ["author_cannot_approve"], 409: ["effective_from_not_after_active", "version_not_in_review"]},
    "reject": {400: ["note_required"], 403: ["author_cannot_reject"], 409: ["version_not_in_review"]},
    "retire": {403: ["four_eyes_required"], 409: ["version_not_retirable"]},
}
VOUCHER_CLOSED = ["voucher_already_redeemed", "voucher_cancelled", "voucher_expired"]
MERCHANT = {403: ["not_merchant_staff"]}
REWARD_FIELDS = ["district_invalid", "limit_invalid", "stock_invalid", "validity_invalid"]


def _merge(*parts: dict[int, list[str]]) -> dict[int, list[str]]:
    merged: dict[int, list[str]] = {}
    for part in parts:
        for status, codes in part.items():
            merged[status] = sorted({*merged.get(status, []), *codes})
    return merged


OPERATION_ERRORS: dict[str, dict[int, list[str]]] = {
    # accounts
    "auth_register": {400: ["district_unknown", "password_weak", "phone_invalid"], 409: ["phone_taken"]},
    "auth_token": {401: ["invalid_credentials"], 429: ["login_locked"], 503: ["login_unavailable"]},
    "auth_token_refresh": {401: ["token_not_valid"]},
    "auth_logout": {400: ["token_not_valid"]},
    "me_update": {400: ["district_unknown"]},
    "me_consents_set": {400: ["consent_required"]},
    "districts_list": {},
    # actions, links
    "partner_actions_submit": _merge(PARTNER_AUTH, {400: ["too_many_actions"]}),
    "partner_actions_status": _merge(PARTNER_AUTH, {404: ["not_found"]}),
    "me_actions_self_report": {
        400: [
            "evidence_too_large",
            "evidence_type_invalid",
            "invalid_data",
            "occurred_in_future",
            "self_report_not_allowed",
            "too_old",
            "unknown_methodology",
        ]
    },
    "admin_reviews_approve": {403: ["review_own_action"], 409: ["action_not_reviewable"]},
    "admin_reviews_reject": {403: ["review_own_action"], 409: ["action_not_reviewable"]},
    "me_link_codes_create": {400: ["invalid_subject"], 429: ["too_many_link_codes"], 503: ["link_code_unavailable"]},
    "partner_links_confirm": _merge(
        PARTNER_AUTH,
        {
            400: ["invalid_subject", "subject_kind_mismatch"],
            403: ["subject_kind_not_allowed"],
            404: ["link_code_invalid"],
            409: ["link_conflict"],
        },
    ),
    "partner_links_end": _merge(
        PARTNER_AUTH, {400: ["invalid_subject"], 403: ["subject_kind_not_allowed"], 404: ["not_found"]}
    ),
    # ledger
    "me_ledger_proof": {409: ["proof_not_ready"]},
    # methodologies
    "methodologies_calculate": {
        400: ["evidence_level_not_accepted", "no_active_version", *ACTION_DATA_CODES, *VALIDITY_CODES],
        404: ["version_not_found"],
    },
    **{f"admin_methodology_version_{verb}": codes for verb, codes in VERSION_ERRORS.items()},
    **{f"admin_points_policy_version_{verb}": codes for verb, codes in VERSION_ERRORS.items()},
    "admin_methodology_version_preview": {400: ["invalid_days", "version_invalid"], 409: ["version_not_previewable"]},
    # offsets
    "offsets_batches_create": {
        400: ["methodology_not_certifiable", "period_invalid", "period_not_finished"],
        409: ["batch_empty"],
    },
    "offsets_orders_create": {
        400: ["batch_unknown", "idempotency_key_invalid", "order_below_minimum", "order_too_large"],
        409: ["idempotency_conflict", "inventory_insufficient", "order_in_progress"],
        503: ["payment_provider_unavailable"],
    },
    "stripe_webhook_create": {400: ["event_invalid", "signature_invalid"]},
    # rewards (resident)
    "rewards_redeem": {
        400: ["body_invalid", "idempotency_key_invalid", "idempotency_key_required"],
        409: ["insufficient_points", "reward_limit_reached", "reward_not_available", "reward_out_of_stock"],
        422: ["idempotency_key_reused"],
        503: ["retry"],
    },
    "me_vouchers_list": {400: ["invalid_choice"]},
    "me_vouchers_retrieve": {404: ["voucher_not_found"]},
    "me_vouchers_cancel": {404: ["voucher_not_found"], 409: VOUCHER_CLOSED},
    # rewards (merchant)
    "merchant_rewards_list": MERCHANT,
    "merchant_rewards_create": _merge(MERCHANT, {400: REWARD_FIELDS}),
    "merchant_rewards_retrieve": MERCHANT,
    "merchant_rewards_update": _merge(MERCHANT, {400: REWARD_FIELDS, 409: ["reward_archived"]}),
    "merchant_rewards_archive": _merge(MERCHANT, {409: ["reward_status_invalid"]}),
    "merchant_rewards_pause": _merge(MERCHANT, {409: ["reward_status_invalid"]}),
    "merchant_rewards_resume": _merge(MERCHANT, {409: ["reward_status_invalid"]}),
    "merchant_rewards_stock": _merge(MERCHANT, {409: ["stock_insufficient", "stock_unlimited"]}),
    "merchant_rewards_image": _merge(MERCHANT, {400: ["image_invalid", "image_too_large"]}),
    "merchant_vouchers_list": _merge(MERCHANT, {400: ["invalid_choice"]}),
    "merchant_vouchers_redeem": _merge(MERCHANT, {404: ["voucher_not_found"], 409: VOUCHER_CLOSED}),
    "merchant_vouchers_scan": _merge(MERCHANT, {400: ["qr_invalid"], 404: ["voucher_not_found"], 409: VOUCHER_CLOSED}),
    "merchant_summary": _merge(MERCHANT, {400: ["date_range_invalid"]}),
    "merchant_staff_list": _merge(MERCHANT, {403: ["manager_required"]}),
    "merchant_staff_create": _merge(
        MERCHANT, {400: ["password_weak", "phone_invalid"], 403: ["manager_required"], 409: ["phone_taken"]}
    ),
    "merchant_staff_delete": _merge(MERCHANT, {400: ["last_manager"], 403: ["manager_required"]}),
}
