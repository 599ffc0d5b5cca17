"""Issue 14 (redemption throughput): `rewards_redeem`, the write half of a redemption in ONE statement (one
round trip, and in autocommit its own transaction: the COMMIT follows the last row lock without a network round
trip). The service (`rewards.services.reward_redeem`) still reads the reward, checks its availability and builds
the voucher; this function does what `_authorise` does, in the lock order of rewards/locking.py:

  1. the voucher INSERT, the idempotency claim: ON CONFLICT DO NOTHING (a same-key request in flight is waited
     for); NULL when the key was used (a replay) or the code collided: the caller looks which;
  2. the per-resident limit: the guarded upsert of `LIMIT_CLAIM_SQL` (`reward_limit_reached`);
  3. the points: `ledger_points_spend` (ledger migration 0008), key `voucher:<id>:hold`, source (voucher, id),
     content hash = sha256 of the caller's canonical JSON with the voucher id spliced in;
  4. the item: the guarded stock UPDATE of the hot row, last (`reward_out_of_stock`, also when the reward
     stopped being active meanwhile).

A refusal raises P0001 with its error code as the message: the whole statement rolls back."""

from django.db import migrations

FORWARD = r"""
CREATE FUNCTION rewards_redeem(
  p_code text, p_reward_id bigint, p_merchant_id bigint, p_resident_id bigint, p_idempotency_key text,
  p_request_hash text, p_points_cost integer, p_face_value_minor bigint, p_currency text,
  p_limit_period_key text, p_limit_count integer, p_stock_taken boolean, p_issued_at timestamptz,
  p_expires_at timestamptz, p_reason text, p_content_prefix text, p_content_suffix text
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  v_id bigint;
BEGIN
  INSERT INTO rewards_voucher (code, reward_id, merchant_id, resident_id, idempotency_key, request_hash,
                               points_cost, face_value_minor, currency, limit_period_key, stock_taken, status,
                               issued_at, expires_at, redeemed_at, redeemed_by_id, closed_at)
  VALUES (p_code, p_reward_id, p_merchant_id, p_resident_id, p_idempotency_key, p_request_hash, p_points_cost,
          p_face_value_minor, p_currency, p_limit_period_key, p_stock_taken, 'issued', p_issued_at, p_expires_at,
          NULL, NULL, NULL)
  ON CONFLICT DO NOTHING RETURNING id INTO v_id;
  IF v_id IS NULL THEN
    RETURN NULL;
  END IF;

  IF p_limit_count > 0 THEN
    INSERT INTO rewards_rewardlimitusage (reward_id, resident_id, period_key, count)
    VALUES (p_reward_id, p_resident_id, p_limit_period_key, 1)
    ON CONFLICT (reward_id, resident_id, period_key) DO UPDATE SET count = rewards_rewardlimitusage.count + 1
    WHERE rewards_rewardlimitusage.count < p_limit_count;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'reward_limit_reached';
    END IF;
  END IF;

  PERFORM ledger_points_spend(
    p_resident_id, 'system:redemption_hold', p_points_cost, 'voucher:' || v_id || ':hold',
    encode(sha256(convert_to(p_content_prefix || v_id || p_content_suffix, 'UTF8')), 'hex'),
    p_reason, 'voucher', v_id, p_issued_at);

  IF p_stock_taken THEN
    UPDATE rewards_reward SET stock = stock - 1 WHERE id = p_reward_id AND stock > 0 AND status = 'active';
    IF NOT FOUND THEN
      RAISE EXCEPTION 'reward_out_of_stock';
    END IF;
  END IF;
  RETURN v_id;
END $$;
"""

BACKWARD = (
    "DROP FUNCTION rewards_redeem(text, bigint, bigint, bigint, text, text, integer, bigint, text, text, integer,"
    " boolean, timestamptz, timestamptz, text, text, text);"
)


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD, params=None)  # the SQL has literal % signs


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("rewards", "0003_voucher_fewer_indexes"),
        ("ledger", "0008_points_spend_function"),
    ]

    operations = [migrations.RunPython(forward, backward)]
