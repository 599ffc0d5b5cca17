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
    "unique",
]

GENERIC_CODES = {
    400: VALIDATION_CODES,
    401: ["authentication_failed", "not_authenticated", "token_not_valid"],
    403: ["permission_denied"],
    404: ["not_found"],
    405: ["method_not_allowed"],
    415: ["unsupported_media_type"],
    429: ["throttled"],
    500: ["server_error"],
}

OPERATION_ERRORS: dict[str, dict[int, list[str]]] = {
    "auth_register": {409: ["phone_taken"]},
    "me_link_codes_create": {400: ["invalid_subject"], 429: ["too_many_link_codes"], 503: ["link_code_unavailable"]},
    "partner_links_confirm": {
        400: ["invalid_subject", "subject_kind_mismatch"],
        403: ["subject_kind_not_allowed"],
        404: ["link_code_invalid"],
        409: ["link_conflict"],
    },
    "partner_links_end": {400: ["invalid_subject"], 403: ["subject_kind_not_allowed"], 404: ["not_found"]},
}
