"""Issue 11: the database decides the time-range history rules under concurrency. Two exclusion constraints
on actions_periodclaim (PostgreSQL with btree_gist; SQLite relies on its write lock, see pipeline/claims.py):

- a trip may not overlap a trip of the same resident from another origin (`origin WITH <>`);
- a weighing window may not overlap another of the same resident and methodology:material.
"""

from django.db import migrations

FORWARD = """
CREATE EXTENSION IF NOT EXISTS btree_gist;
ALTER TABLE actions_periodclaim ADD CONSTRAINT period_claim_trip_no_overlap
    EXCLUDE USING gist (resident_id WITH =, origin WITH <>, tstzrange(starts_at, ends_at) WITH &&)
    WHERE (kind = 'trip');
ALTER TABLE actions_periodclaim ADD CONSTRAINT period_claim_window_no_overlap
    EXCLUDE USING gist (resident_id WITH =, scope WITH =, tstzrange(starts_at, ends_at) WITH &&)
    WHERE (kind = 'window');
"""
BACKWARD = """
ALTER TABLE actions_periodclaim DROP CONSTRAINT IF EXISTS period_claim_trip_no_overlap;
ALTER TABLE actions_periodclaim DROP CONSTRAINT IF EXISTS period_claim_window_no_overlap;
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [("actions", "0006_partner_attested_links_and_history_claims")]

    operations = [migrations.RunPython(forwards, backwards)]
