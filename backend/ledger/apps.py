from django.apps import AppConfig


class LedgerConfig(AppConfig):
    name = "backend.ledger"
    label = "ledger"
    verbose_name = "Ledger"

    def ready(self):
        from celery.schedules import crontab

        from backend.celery import add_beat_entry

        # Asia/Shanghai (the Celery timezone): expiry just after midnight, the day's root after late commits.
        add_beat_entry("ledger-points-expire", "ledger.points_lots_expire", crontab(hour=0, minute=5))
        add_beat_entry("ledger-merkle-root", "ledger.merkle_root_compute", crontab(hour=0, minute=20))
        add_beat_entry("ledger-reconcile", "ledger.balances_reconcile", crontab(hour=3, minute=0))
