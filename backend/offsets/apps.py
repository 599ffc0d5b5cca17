from django.apps import AppConfig


class OffsetsConfig(AppConfig):
    name = "backend.offsets"
    label = "offsets"
    verbose_name = "Offsets"

    def ready(self):
        from celery.schedules import crontab

        from backend.celery import add_beat_entry

        # Every minute: an unpaid reservation is released within a minute of its 30 minutes running out.
        add_beat_entry("offsets-expire-reservations", "offsets.reservations_expire", 60.0)
        # Webhook events recorded but not processed (a lost enqueue) are picked up again.
        add_beat_entry("offsets-stripe-events-retry", "offsets.stripe_events_retry", 300.0)
        # Merchant settlement: waiting payables are funded as money arrives; settlements weekly, Monday 03:00.
        add_beat_entry("offsets-payables-fund", "offsets.payables_fund", 60.0)
        add_beat_entry(
            "offsets-settlements-run", "offsets.settlements_run", crontab(minute=0, hour=3, day_of_week="mon")
        )
