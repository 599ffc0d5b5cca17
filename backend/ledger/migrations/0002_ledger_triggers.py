"""Database-enforced ledger invariants (PostgreSQL only; the SQLite quick start relies on the services).

1. Zero-sum: a DEFERRABLE INITIALLY DEFERRED constraint trigger, one per ledger transaction row (not per
   posting: 1,000 bulk-posted transactions cost 1,000 indexed sums at commit, not 4,000), checks at commit
   that the transaction has at least two postings and that they sum to zero per (unit, currency).
2. No late postings: a statement-level trigger (one query per INSERT/COPY statement, using the transition
   table) refuses postings for a transaction created by another database transaction, whose zero-sum check
   has already run.
3. Immutability: postings and transactions refuse UPDATE and DELETE (TRUNCATE, used only by test flushes, is
   not a row operation).
"""

from django.db import migrations

FORWARD = r"""
ALTER TABLE ledger_ledgertransaction ADD COLUMN db_txid bigint NOT NULL DEFAULT txid_current();

CREATE FUNCTION ledger_transaction_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  n bigint;
  unbalanced text;
BEGIN
  SELECT coalesce(sum(c), 0), string_agg(unit || coalesce(nullif(':' || currency, ':'), '') || '=' || s, ', ')
           FILTER (WHERE s <> 0)
    INTO n, unbalanced
    FROM (SELECT unit, currency, sum(amount) AS s, count(*) AS c
            FROM ledger_posting WHERE transaction_id = NEW.id GROUP BY unit, currency) g;
  IF n < 2 THEN
    RAISE EXCEPTION 'ledger transaction % has % posting(s); at least 2 are required', NEW.id, n
      USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_transaction_balanced';
  END IF;
  IF unbalanced IS NOT NULL THEN
    RAISE EXCEPTION 'ledger transaction % does not sum to zero: %', NEW.id, unbalanced
      USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_transaction_balanced';
  END IF;
  RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER ledger_transaction_balanced
  AFTER INSERT ON ledger_ledgertransaction DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION ledger_transaction_balanced();

CREATE FUNCTION ledger_posting_same_db_transaction() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  late bigint;
BEGIN
  SELECT t.id INTO late
    FROM (SELECT DISTINCT transaction_id FROM new_postings) p
    JOIN ledger_ledgertransaction t ON t.id = p.transaction_id
   WHERE t.db_txid <> txid_current()
   LIMIT 1;
  IF late IS NOT NULL THEN
    RAISE EXCEPTION 'ledger transaction % is closed: postings are added only together with their transaction', late
      USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_posting_same_db_transaction';
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER ledger_posting_same_db_transaction
  AFTER INSERT ON ledger_posting REFERENCING NEW TABLE AS new_postings
  FOR EACH STATEMENT EXECUTE FUNCTION ledger_posting_same_db_transaction();

CREATE FUNCTION ledger_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% rows are immutable (% refused); post a reversing transaction instead', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER ledger_posting_immutable BEFORE UPDATE OR DELETE ON ledger_posting
  FOR EACH ROW EXECUTE FUNCTION ledger_immutable();
CREATE TRIGGER ledger_transaction_immutable BEFORE UPDATE OR DELETE ON ledger_ledgertransaction
  FOR EACH ROW EXECUTE FUNCTION ledger_immutable();
"""

BACKWARD = r"""
DROP TRIGGER IF EXISTS ledger_transaction_immutable ON ledger_ledgertransaction;
DROP TRIGGER IF EXISTS ledger_posting_immutable ON ledger_posting;
DROP FUNCTION IF EXISTS ledger_immutable();
DROP TRIGGER IF EXISTS ledger_posting_same_db_transaction ON ledger_posting;
DROP FUNCTION IF EXISTS ledger_posting_same_db_transaction();
DROP TRIGGER IF EXISTS ledger_transaction_balanced ON ledger_ledgertransaction;
DROP FUNCTION IF EXISTS ledger_transaction_balanced();
ALTER TABLE ledger_ledgertransaction DROP COLUMN IF EXISTS db_txid;
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD, params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [("ledger", "0001_initial")]

    operations = [migrations.RunPython(forward, backward)]
