"""Issue 14 (redemption throughput): `rewards_redeem`, a whole redemption in ONE statement (one round trip, and in
autocommit its own transaction: the COMMIT follows the hot row's UPDATE inside PostgreSQL, with no network round
trip and no Python in between). The service (`rewards.redemption.reward_redeem`) stays the entry point: it checks the
Idempotency-Key's shape, hashes the request, draws the voucher code and maps refusals to API errors; this function
does what `reward_for_redemption`, `_check_available` and `_authorise` do on other databases, in the lock order of
rewards/locking.py:

  0. the reward with its merchant, and their availability (status, dates, district, an empty stock as a fast
     path); a refusal here answers the earlier voucher of the same key when there is one (a replay of a
     redemption whose reward ran out or was paused since), else raises;
  1. the voucher INSERT, the idempotency claim: ON CONFLICT DO NOTHING (a same-key request in flight is waited
     for); outcome `conflict` when the key was used or the code collided: the caller looks which;
  2. the per-resident limit: the guarded upsert of `LIMIT_CLAIM_SQL` (`reward_limit_reached`); the period keys
     (Asia/Shanghai day, ISO week, month) come from the caller's `limit_period_key`;
  3. the points: `ledger_points_spend` (ledger migration 0009), key `voucher:<id>:hold`, source (voucher, id),
     content hash = sha256 of `rewards.redemption.hold_content` (the same definition on both paths);
  4. the item: the guarded stock UPDATE of the hot row, last (`reward_out_of_stock`, also when the reward
     stopped being active meanwhile).

A refusal raises P0001 with its error code as the message, so the whole statement rolls back. The result row
carries what the response shows (the voucher's fields, the reward's titles, the merchant's names and address)."""

from django.db import migrations

FORWARD = r"""
CREATE FUNCTION rewards_redeem(
  p_reward_id bigint, p_resident_id bigint, p_resident_district text, p_idempotency_key text,
  p_request_hash text, p_code text, p_now timestamptz, p_period_keys text[]
) RETURNS TABLE (
  o_outcome text, o_voucher_id bigint, o_merchant_id bigint, o_points_cost integer, o_face_value_minor bigint,
  o_currency text, o_limit_period_key text, o_stock_taken boolean, o_expires_at timestamptz,
  o_title_zh text, o_title_en text, o_name_zh text, o_name_en text, o_address text
) LANGUAGE plpgsql AS $$
DECLARE
  r record;
  v_refusal text;
  v_period_key text := '';
  v_id bigint;
  v_expires_at timestamptz;
BEGIN
  SELECT rw.id, rw.merchant_id, rw.title_zh, rw.title_en, rw.points_cost, rw.stock, rw.limit_count,
         rw.limit_period, rw.valid_from, rw.valid_until, rw.voucher_validity_days, rw.district_id,
         rw.face_value_minor, rw.currency, rw.status, m.status AS merchant_status, m.name_zh, m.name_en, m.address
    INTO r
    FROM rewards_reward rw JOIN rewards_merchant m ON m.id = rw.merchant_id
   WHERE rw.id = p_reward_id;
  IF NOT FOUND THEN
    v_refusal := 'not_found';
  ELSIF r.status <> 'active' OR r.merchant_status <> 'active' THEN
    v_refusal := 'reward_not_available:status';
  ELSIF p_now < r.valid_from OR (r.valid_until IS NOT NULL AND p_now >= r.valid_until) THEN
    v_refusal := 'reward_not_available:time';
  ELSIF r.district_id IS NOT NULL AND r.district_id IS DISTINCT FROM p_resident_district THEN
    v_refusal := 'reward_not_available:district';
  ELSIF r.stock = 0 THEN
    v_refusal := 'reward_out_of_stock';
  END IF;
  IF v_refusal IS NOT NULL THEN
    IF EXISTS (SELECT 1 FROM rewards_voucher v
                WHERE v.resident_id = p_resident_id AND v.idempotency_key = p_idempotency_key) THEN
      o_outcome := 'conflict';
      RETURN NEXT;
      RETURN;
    END IF;
    RAISE EXCEPTION '%', v_refusal;
  END IF;

  IF coalesce(r.limit_count, 0) > 0 THEN
    v_period_key := CASE r.limit_period WHEN 'day' THEN p_period_keys[1] WHEN 'week' THEN p_period_keys[2]
                                        WHEN 'month' THEN p_period_keys[3] ELSE 'ever' END;
  END IF;
  v_expires_at := p_now + r.voucher_validity_days * interval '24 hours';

  INSERT INTO rewards_voucher (code, reward_id, merchant_id, resident_id, idempotency_key, request_hash,
                               points_cost, face_value_minor, currency, limit_period_key, stock_taken, status,
                               issued_at, expires_at, redeemed_at, redeemed_by_id, closed_at)
  VALUES (p_code, r.id, r.merchant_id, p_resident_id, p_idempotency_key, p_request_hash, r.points_cost,
          r.face_value_minor, r.currency, v_period_key, r.stock IS NOT NULL, 'issued', p_now, v_expires_at,
          NULL, NULL, NULL)
  ON CONFLICT DO NOTHING RETURNING id INTO v_id;
  IF v_id IS NULL THEN
    o_outcome := 'conflict';
    RETURN NEXT;
    RETURN;
  END IF;

  IF coalesce(r.limit_count, 0) > 0 THEN
    INSERT INTO rewards_rewardlimitusage (reward_id, resident_id, period_key, count)
    VALUES (r.id, p_resident_id, v_period_key, 1)
    ON CONFLICT (reward_id, resident_id, period_key) DO UPDATE SET count = rewards_rewardlimitusage.count + 1
    WHERE rewards_rewardlimitusage.count < r.limit_count;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'reward_limit_reached';
    END IF;
  END IF;

  PERFORM ledger_points_spend(
    p_resident_id, 'system:redemption_hold', r.points_cost, 'voucher:' || v_id || ':hold',
    encode(sha256(convert_to(
      '{"kind":"points_spend","postings":[["resident:' || p_resident_id || ':points",' || -r.points_cost
      || '],["system:redemption_hold",' || r.points_cost || ']],"reward":' || r.id
      || ',"source":["voucher",' || v_id || ']}', 'UTF8')), 'hex'),
    left('Reward: ' || r.title_zh, 255), 'voucher', v_id, p_now);

  IF r.stock IS NOT NULL THEN
    UPDATE rewards_reward SET stock = stock - 1 WHERE id = r.id AND stock > 0 AND status = 'active';
    IF NOT FOUND THEN
      RAISE EXCEPTION 'reward_out_of_stock';
    END IF;
  END IF;

  o_outcome := 'created';
  o_voucher_id := v_id;
  o_merchant_id := r.merchant_id;
  o_points_cost := r.points_cost;
  o_face_value_minor := r.face_value_minor;
  o_currency := r.currency;
  o_limit_period_key := v_period_key;
  o_stock_taken := r.stock IS NOT NULL;
  o_expires_at := v_expires_at;
  o_title_zh := r.title_zh;
  o_title_en := r.title_en;
  o_name_zh := r.name_zh;
  o_name_en := r.name_en;
  o_address := r.address;
  RETURN NEXT;
END $$;
"""

BACKWARD = "DROP FUNCTION rewards_redeem(bigint, bigint, text, text, text, text, timestamptz, text[]);"


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD, params=None)  # the SQL has literal % signs


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("rewards", "0003_voucher_fewer_indexes"),
        ("ledger", "0009_points_spend_function"),
    ]

    operations = [migrations.RunPython(forward, backward)]
