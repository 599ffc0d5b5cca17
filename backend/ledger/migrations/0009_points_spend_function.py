"""Issue 14 (redemption throughput): `ledger_points_spend`, the points spend of `points_spend` as one PostgreSQL
function, for write paths that do a whole business transaction in one statement (rewards' redemption:
rewards/migrations/0004). It does exactly what `_post_one` does for a spend, in the same lock order:

  1. the accounts: the resident's points account (none: `insufficient_points`) and the target, an unfloored
     system points account (created on first use, as `accounts_ensure` does);
  2. the transaction and its two postings (resident first), ON CONFLICT DO NOTHING on the idempotency key;
     a key that exists raises `ledger_idempotency_key_exists` (the callers' keys are new by construction);
  3. the resident's floored balance: one guarded UPDATE (its row lock serialises every change to the lots);
  4. the lots, soonest expiry first (`LOTS_CONSUME` of backend/ledger/services/lots.py, the same statement,
     including its `expired_at IS NULL`, the predicate of the `ledger_lot_open` index since 0008).

Refusals are RAISE EXCEPTION with SQLSTATE P0001 and the error code as the message (`insufficient_points`), so
the whole statement rolls back. The content hash comes from the caller (Python's `_content_hash` of the same
payload); the deferred zero-sum trigger, the immutability triggers and CHECK (balance >= 0) stay the backstop.
Only on PostgreSQL: the embedded SQLite quick start posts through `_post_one`."""

from django.db import migrations

FORWARD = r"""
CREATE FUNCTION ledger_points_spend(
  p_resident_id bigint, p_to_key text, p_points bigint, p_idempotency_key text, p_content_hash text,
  p_reason text, p_source_type text, p_source_id bigint, p_now timestamptz
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  v_from bigint;
  v_to bigint;
  v_to_floored boolean;
  v_txn bigint;
  v_taken bigint;
BEGIN
  IF p_points <= 0 THEN
    RAISE EXCEPTION 'ledger_invalid_amount';
  END IF;
  IF p_to_key NOT LIKE 'system:%' THEN
    RAISE EXCEPTION 'ledger_points_spend: the target must be a system account, not %', p_to_key
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  SELECT id INTO v_from FROM ledger_account WHERE key = 'resident:' || p_resident_id || ':points';
  IF v_from IS NULL THEN
    RAISE EXCEPTION 'insufficient_points';
  END IF;
  SELECT id, floored INTO v_to, v_to_floored FROM ledger_account WHERE key = p_to_key AND unit = 'points';
  IF v_to IS NULL THEN
    INSERT INTO ledger_account (key, kind, owner_id, name, unit, currency, floored, balance)
    VALUES (p_to_key, 'system', NULL, substr(p_to_key, 8), 'points', '', false, 0)
    ON CONFLICT (key) DO NOTHING;
    SELECT id, floored INTO v_to, v_to_floored FROM ledger_account WHERE key = p_to_key AND unit = 'points';
  END IF;
  IF v_to IS NULL OR v_to_floored THEN
    RAISE EXCEPTION 'ledger_points_spend: % is not an unfloored points account', p_to_key
      USING ERRCODE = 'invalid_parameter_value';
  END IF;

  INSERT INTO ledger_ledgertransaction (kind, reason, source_type, source_id, idempotency_key, content_hash,
                                        effective_at, reverses_id, releases_id, lot_expiry_months)
  VALUES ('points_spend', left(p_reason, 255), p_source_type, p_source_id, p_idempotency_key, p_content_hash,
          p_now, NULL, NULL, NULL)
  ON CONFLICT DO NOTHING RETURNING id INTO v_txn;
  IF v_txn IS NULL THEN
    RAISE EXCEPTION 'ledger_idempotency_key_exists: %', p_idempotency_key USING ERRCODE = 'unique_violation';
  END IF;
  INSERT INTO ledger_posting (transaction_id, account_id, unit, currency, amount)
  VALUES (v_txn, v_from, 'points', '', -p_points), (v_txn, v_to, 'points', '', p_points);

  UPDATE ledger_account SET balance = balance - p_points WHERE id = v_from AND balance - p_points >= 0;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'insufficient_points';
  END IF;

  WITH open AS (SELECT id, remaining, expires_at FROM ledger_pointslot
                 WHERE account_id = v_from AND expired_at IS NULL AND remaining > 0 AND expires_at > p_now
                 ORDER BY expires_at, id FOR UPDATE),
       take AS (SELECT id, expires_at, LEAST(remaining, p_points - before)::bigint AS n
                  FROM (SELECT id, remaining, expires_at,
                               sum(remaining) OVER (ORDER BY expires_at, id) - remaining AS before FROM open) r
                 WHERE before < p_points),
       used AS (UPDATE ledger_pointslot l SET remaining = l.remaining - take.n FROM take WHERE l.id = take.id),
       consumed AS (INSERT INTO ledger_lotconsumption (lot_id, transaction_id, kind, amount)
                    SELECT id, v_txn, 'spend', n FROM take ORDER BY expires_at, id RETURNING amount)
  SELECT coalesce(sum(amount), 0) INTO v_taken FROM consumed;
  IF v_taken <> p_points THEN
    RAISE EXCEPTION 'insufficient_points';
  END IF;
  RETURN v_txn;
END $$;
"""

BACKWARD = "DROP FUNCTION ledger_points_spend(bigint, text, bigint, text, text, text, text, bigint, timestamptz);"


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD, params=None)  # the SQL has literal % signs


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD)


class Migration(migrations.Migration):
    dependencies = [
        ("ledger", "0008_one_lot_per_month"),
    ]

    operations = [migrations.RunPython(forward, backward)]
