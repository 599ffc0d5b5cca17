from django.apps import AppConfig


class RewardsConfig(AppConfig):
    """Merchants, catalogue, two-phase redemption to vouchers, validation at the counter."""

    name = "rewards"
    verbose_name = "Rewards"

    def ready(self):
        from backend.celery import add_beat_entry

        add_beat_entry("rewards-vouchers-expire", "rewards.vouchers_expire", 300.0)
