"""One earned points lot per account and expiry date (issue 17): existing earned lots of one account and expiry
are merged into the oldest (their consumptions move with them, so issued = remaining + consumed still holds per
lot), then a partial unique index keeps it that way. Lot indexes no longer mention `remaining` (HOT updates when
a credit adds to a lot), the transaction index goes (nothing reads lots by transaction), and the table keeps
free space per page for those HOT updates."""

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import Min, Sum


def merge_lots(apps, schema_editor):
    lot_model = apps.get_model("ledger", "PointsLot")
    consumption_model = apps.get_model("ledger", "LotConsumption")
    open_earned = lot_model.objects.filter(kind="earned", expired_at__isnull=True)
    groups = (
        open_earned.values("account_id", "expires_at")
        .annotate(n=models.Count("id"), keep=Min("id"), amount=Sum("amount"), remaining=Sum("remaining"))
        .filter(n__gt=1)
    )
    for group in groups.iterator():
        others = open_earned.filter(account_id=group["account_id"], expires_at=group["expires_at"]).exclude(
            id=group["keep"]
        )
        other_ids = list(others.values_list("id", flat=True))
        consumption_model.objects.filter(lot_id__in=other_ids).update(lot_id=group["keep"])
        lot_model.objects.filter(id=group["keep"]).update(amount=group["amount"], remaining=group["remaining"])
        lot_model.objects.filter(id__in=other_ids).delete()
    if schema_editor.connection.vendor == "postgresql":
        # Check the deferred foreign keys of the moved consumptions now: ALTER TABLE refuses pending trigger events.
        schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def lot_fillfactor(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE ledger_pointslot SET (fillfactor = 50)")


class Migration(migrations.Migration):
    dependencies = [
        ("ledger", "0007_created_at_brin"),
    ]

    operations = [
        migrations.RunPython(merge_lots, migrations.RunPython.noop),
        migrations.RunPython(lot_fillfactor, migrations.RunPython.noop),
        migrations.RemoveIndex(
            model_name="pointslot",
            name="ledger_lot_open",
        ),
        migrations.RemoveIndex(
            model_name="pointslot",
            name="ledger_lot_due",
        ),
        migrations.AlterField(
            model_name="pointslot",
            name="transaction",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="lots",
                to="ledger.ledgertransaction",
            ),
        ),
        migrations.AddIndex(
            model_name="pointslot",
            index=models.Index(
                condition=models.Q(("expired_at__isnull", True)),
                fields=["account", "expires_at", "id"],
                name="ledger_lot_open",
            ),
        ),
        migrations.AddIndex(
            model_name="pointslot",
            index=models.Index(
                condition=models.Q(("expired_at__isnull", True)), fields=["expires_at"], name="ledger_lot_due"
            ),
        ),
        migrations.AddConstraint(
            model_name="pointslot",
            constraint=models.UniqueConstraint(
                condition=models.Q(("expired_at__isnull", True), ("kind", "earned")),
                fields=("account", "expires_at"),
                name="ledger_lot_one_per_month",
            ),
        ),
    ]
