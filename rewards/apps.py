from django.apps import AppConfig


class RewardsConfig(AppConfig):
    """Merchants, catalogue, two-phase redemption to vouchers, validation at the counter."""

    name = "rewards"
    verbose_name = "Rewards"

