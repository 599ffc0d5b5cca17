from django.apps import AppConfig


class StatsConfig(AppConfig):
    name = "backend.stats"
    label = "stats"
    verbose_name = "Statistics and leaderboards"

    def ready(self):
        from celery.schedules import crontab

        from backend.celery import add_beat_entry

        add_beat_entry("stats-aggregate", "stats.aggregate", 60.0)
        # Asia/Shanghai: after the ledger's nightly jobs; repairs boards a Redis outage left behind.
        add_beat_entry("stats-leaderboards-rebuild", "stats.leaderboards_rebuild", crontab(hour=3, minute=40))
