from django.apps import AppConfig


class ActionsConfig(AppConfig):
    name = "backend.actions"
    label = "actions"
    verbose_name = "Actions"

    def ready(self):
        from celery.schedules import crontab

        from backend.celery import add_beat_entry

        add_beat_entry("actions-reconcile", "actions.reconcile", 60.0)
        add_beat_entry("actions-expire-unclaimed", "actions.expire_unclaimed", crontab(hour=3, minute=30))
