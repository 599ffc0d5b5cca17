"""Issue 17 (ingestion): processing an action becomes a heap-only (HOT) update that writes no index entry.

An action is inserted `received` and updated once when processed. That update rewrote an entry in every index
of the table (5), because `status` was in three of them (the status index, and the conditions of the unclaimed
and received-batch partial indexes). Now no index mentions `status`:

- the reconciler finds its work through batches not yet processed (`IngestBatch.processed_at`, a partial index
  on the batches still open) instead of an index on the actions' status;
- the review queue is a partial index on `needs_review`, which the database keeps equal to
  `status in (flagged, pending_review)` (a CHECK) and which changes only for the actions that go to review;
- unclaimed actions are found (by subject, and by age to expire them) through a partial index on actions
  without a resident: the resident is resolved at submission now, so processing leaves `resident_id` alone;
- the worker reads a batch through a plain index on `batch_id`;
- the table leaves room on each page (fillfactor 30: a processed action is about twice the size of a received
  one) for the processed version of each row, so the update stays on its page.

Existing batches with no `received` action are marked processed; existing flagged / pending actions are marked
for review before the CHECK is added, and the old status indexes are dropped last (the backfills use them).
Fillfactor applies to pages written from now on: nothing is rewritten.
"""

from django.db import migrations, models

REVIEW = ("flagged", "pending_review")


def backfill(apps, schema_editor):
    Action = apps.get_model("actions", "Action")
    IngestBatch = apps.get_model("actions", "IngestBatch")
    Action.objects.filter(status__in=REVIEW).update(needs_review=True)
    open_batches = Action.objects.filter(status="received").values("batch_id")
    IngestBatch.objects.exclude(id__in=open_batches).update(processed_at=models.F("received_at"))


def fillfactor(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE actions_action SET (fillfactor = 30)")


def fillfactor_reset(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE actions_action RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [
        ("actions", "0009_fewer_index_entries"),
    ]

    operations = [
        migrations.AddField(
            model_name="action",
            name="needs_review",
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name="ingestbatch",
            name="processed_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name="action",
            index=models.Index(
                condition=models.Q(("resident__isnull", True)),
                fields=["subject_kind", "subject_hash", "occurred_at"],
                name="action_unbound_subject",
            ),
        ),
        migrations.AddIndex(
            model_name="action",
            index=models.Index(fields=["batch"], name="action_batch"),
        ),
        migrations.AddIndex(
            model_name="action",
            index=models.Index(condition=models.Q(("needs_review", True)), fields=["id"], name="action_review_queue"),
        ),
        migrations.AddIndex(
            model_name="ingestbatch",
            index=models.Index(
                condition=models.Q(("processed_at__isnull", True)),
                fields=["received_at"],
                name="ingestbatch_unprocessed",
            ),
        ),
        migrations.AddConstraint(
            model_name="action",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("needs_review", True), ("status__in", REVIEW)),
                    models.Q(("needs_review", False), models.Q(("status__in", REVIEW), _negated=True)),
                    _connector="OR",
                ),
                name="action_needs_review_matches_status",
            ),
        ),
        migrations.RemoveIndex(
            model_name="action",
            name="actions_act_status_02ff83_idx",
        ),
        migrations.RemoveIndex(
            model_name="action",
            name="action_unclaimed_subject",
        ),
        migrations.RemoveIndex(
            model_name="action",
            name="action_batch_received",
        ),
        migrations.RunPython(fillfactor, fillfactor_reset),
    ]
