"""Issue 11: every version declares `max_grams_per_action`. Versions are immutable once submitted (trigger of
0002), so this one migration - and nothing else - gives the versions that exist without a ceiling the
Qingdao v1 catalogue's value: the trigger is disabled for this transaction only (ALTER TABLE is transactional
in PostgreSQL; a failure re-enables it with the rollback), each change is noted on the version, and only the
missing key is added: no parameter, rule or window changes. Fresh databases are seeded with the ceiling
already in the catalogue; `manage.py seed` stays idempotent."""

from django.db import migrations

# The Qingdao v1 catalogue's ceilings (g CO2e per action), as in backend/methodologies/catalogue.py.
CEILINGS = {
    "bus_ride": 2000,
    "metro_ride": 4000,
    "bike_ride": 8000,
    "walk_steps": 1000,
    "nev_charging": 35000,
    "recycling": 405000,
    "kitchen_waste": 1000,
    "efficient_appliance": 3400000,
    "paperless_bill": 180,
    "reusable_cup": 300,
    "reusable_bag": 100,
}
NOTE = "max_grams_per_action {value} g added by migration methodologies 0003 (issue 11: every version has a ceiling)."
TRIGGER = "methodologies_version_immutable"


def forwards(apps, schema_editor):
    Version = apps.get_model("methodologies", "MethodologyVersion")
    todo = [
        v
        for v in Version.objects.select_related("methodology").filter(methodology__code__in=CEILINGS)
        if "max_grams_per_action" not in (v.validity_rules or {})
    ]
    if not todo:
        return
    postgres = schema_editor.connection.vendor == "postgresql"
    if postgres:
        schema_editor.execute(f"ALTER TABLE methodologies_methodologyversion DISABLE TRIGGER {TRIGGER}")
    for version in todo:
        value = CEILINGS[version.methodology.code]
        version.validity_rules = {**(version.validity_rules or {}), "max_grams_per_action": value}
        version.notes = "\n".join(filter(None, [version.notes, NOTE.format(value=value)]))
        version.save(update_fields=["validity_rules", "notes"])
    if postgres:
        schema_editor.execute(f"ALTER TABLE methodologies_methodologyversion ENABLE TRIGGER {TRIGGER}")


class Migration(migrations.Migration):
    dependencies = [("methodologies", "0002_immutable_versions_trigger")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
