"""Seed Qingdao's ten districts (data in backend/accounts/reference.py, from ../shared/qingdao.md)."""
from django.db import migrations

from backend.accounts.reference import districts_upsert


def seed(apps, schema_editor):
    districts_upsert(apps.get_model("accounts", "District"))


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
