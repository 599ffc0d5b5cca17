"""Issue 17 (ingestion): a daily cap reservation lives on the usage row it adds to (`reservations`, action id ->
decimal string) instead of a CapReservation row per action: one row, one index entry and one foreign-key check
less per credited action. Existing reservations are folded into their usage rows. The usage row's resident
index goes (the unique (resident, methodology, day) starts with it), and usage rows leave room on their page
(fillfactor 70) so the pipeline's update of `used` stays a heap-only update without new index entries."""

from django.db import migrations, models

from backend.core.days import local_day


def fold_reservations(apps, schema_editor):
    Usage = apps.get_model("actions", "DailyCapUsage")
    Reservation = apps.get_model("actions", "CapReservation")
    maps: dict = {}
    for r in Reservation.objects.select_related("action").iterator(chunk_size=2000):
        a = r.action
        maps.setdefault((a.resident_id, a.methodology, local_day(a.occurred_at)), {})[str(a.id)] = str(r.quantity)
    for (resident, methodology, day), reservations in maps.items():
        Usage.objects.filter(resident_id=resident, methodology=methodology, day=day).update(reservations=reservations)


def fillfactor(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE actions_dailycapusage SET (fillfactor = 70)")


class Migration(migrations.Migration):
    dependencies = [("actions", "0007_period_claim_exclusion")]

    operations = [
        migrations.AddField(
            model_name="dailycapusage", name="reservations", field=models.JSONField(blank=True, default=dict)
        ),
        migrations.RunPython(fold_reservations, migrations.RunPython.noop),
        migrations.DeleteModel(name="CapReservation"),
        migrations.AlterField(
            model_name="dailycapusage",
            name="resident",
            field=models.ForeignKey(
                db_index=False,
                on_delete=models.deletion.CASCADE,
                related_name="+",
                to="accounts.user",
            ),
        ),
        migrations.RunPython(fillfactor, migrations.RunPython.noop),
    ]
