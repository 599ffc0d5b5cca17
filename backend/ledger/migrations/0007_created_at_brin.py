"""Issue 17 (ingestion): one b-tree entry less per ledger transaction (an action credit writes 3 instead of 4).

`created_at` is only read in ranges (the statistics' watermark slices, in insertion order), and transactions
arrive in that order: a BRIN index (one summary per 128 pages) serves those reads and costs an insert nothing,
like `booked_on`'s (migration 0005). The quick start's SQLite keeps a plain index."""

from django.db import migrations

BRIN = "CREATE INDEX ledger_txn_created_brin ON ledger_ledgertransaction USING brin (created_at)"


def created_at_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BRIN)
    else:
        schema_editor.execute("CREATE INDEX ledger_txn_created_brin ON ledger_ledgertransaction (created_at)")


def created_at_index_drop(apps, schema_editor):
    schema_editor.execute("DROP INDEX ledger_txn_created_brin")


class Migration(migrations.Migration):
    dependencies = [
        ("ledger", "0006_fewer_index_entries"),
    ]

    operations = [
        migrations.RunPython(created_at_index, created_at_index_drop),
        migrations.RemoveIndex(model_name="ledgertransaction", name="ledger_txn_created"),
    ]
