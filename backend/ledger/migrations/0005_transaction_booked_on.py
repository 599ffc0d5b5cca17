"""The booking day of a ledger transaction (`booked_on`): the Asia/Shanghai day whose Merkle tree holds it.

Existing transactions are booked on the Asia/Shanghai day of their `created_at`, which is what the day roots were
computed over until now, so every published root stays reproducible. New ones default to the database's today.

PostgreSQL keeps the day roots honest (the SQLite quick start relies on the services):
1. A transaction booked on any day but the database transaction's own today is checked (a trigger whose WHEN
   clause leaves the ordinary posting path alone): never a future day, never a day whose root is published. It
   takes the day's advisory lock in shared mode first, and `merkle_root_compute` takes it exclusively before it
   reads the day's leaves: a backfill either commits before the root reads the day, or waits and is refused.
2. A root is only stored for a finished day (by the database's clock) and, like postings, never updated or deleted.
3. The day's leaves are read through a BRIN index on `booked_on` (nearly free for inserts: days arrive in order).
"""

from django.db import migrations, models

import backend.core.days

DAY_LOCK = 1279541593  # the advisory lock class of ledger days ("LDAY"); backend/ledger/services/integrity.py

FORWARD = rf"""
CREATE INDEX ledger_txn_booked_on ON ledger_ledgertransaction USING brin (booked_on);

CREATE FUNCTION ledger_transaction_booking_day() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.booked_on > (clock_timestamp() AT TIME ZONE 'Asia/Shanghai')::date THEN
    RAISE EXCEPTION 'ledger transaction booked on %, a day that has not begun', NEW.booked_on
      USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_transaction_booking_day';
  END IF;
  -- Held until commit: a root of this day computed from now on waits for this transaction and includes it.
  PERFORM pg_advisory_xact_lock_shared({DAY_LOCK}, NEW.booked_on - DATE '1970-01-01');
  IF EXISTS (SELECT 1 FROM ledger_merkleroot WHERE day = NEW.booked_on) THEN
    RAISE EXCEPTION 'ledger day % is sealed: its Merkle root is published', NEW.booked_on
      USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_transaction_booking_day';
  END IF;
  RETURN NEW;
END $$;

CREATE TRIGGER ledger_transaction_booking_day BEFORE INSERT ON ledger_ledgertransaction
  FOR EACH ROW WHEN (NEW.booked_on <> (now() AT TIME ZONE 'Asia/Shanghai')::date)
  EXECUTE FUNCTION ledger_transaction_booking_day();

CREATE FUNCTION ledger_merkleroot_day_finished() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.day >= (clock_timestamp() AT TIME ZONE 'Asia/Shanghai')::date THEN
    RAISE EXCEPTION 'no Merkle root for %: the day is not over', NEW.day
      USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_merkleroot_day_finished';
  END IF;
  RETURN NEW;
END $$;

CREATE TRIGGER ledger_merkleroot_day_finished BEFORE INSERT ON ledger_merkleroot
  FOR EACH ROW EXECUTE FUNCTION ledger_merkleroot_day_finished();
CREATE TRIGGER ledger_merkleroot_immutable BEFORE UPDATE OR DELETE ON ledger_merkleroot
  FOR EACH ROW EXECUTE FUNCTION ledger_immutable();
"""

BACKWARD = r"""
DROP TRIGGER IF EXISTS ledger_merkleroot_immutable ON ledger_merkleroot;
DROP TRIGGER IF EXISTS ledger_merkleroot_day_finished ON ledger_merkleroot;
DROP FUNCTION IF EXISTS ledger_merkleroot_day_finished();
DROP TRIGGER IF EXISTS ledger_transaction_booking_day ON ledger_ledgertransaction;
DROP FUNCTION IF EXISTS ledger_transaction_booking_day();
DROP INDEX IF EXISTS ledger_txn_booked_on;
"""


def book_existing(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        # Transactions are immutable (migration 0002): lift that for this one backfill of a new column only.
        schema_editor.execute(
            "ALTER TABLE ledger_ledgertransaction DISABLE TRIGGER ledger_transaction_immutable;"
            " UPDATE ledger_ledgertransaction SET booked_on = (created_at AT TIME ZONE 'Asia/Shanghai')::date;"
            " ALTER TABLE ledger_ledgertransaction ENABLE TRIGGER ledger_transaction_immutable;",
            params=None,
        )
    else:
        schema_editor.execute("UPDATE ledger_ledgertransaction SET booked_on = date(created_at, '+8 hours')")


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD, params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [("ledger", "0004_merkle_tree_levels")]

    operations = [
        migrations.AddField(model_name="ledgertransaction", name="booked_on", field=models.DateField(null=True)),
        migrations.RunPython(book_existing, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="ledgertransaction",
            name="booked_on",
            field=models.DateField(db_default=backend.core.days.LocalToday()),
        ),
        migrations.RunPython(forward, backward),
    ]
