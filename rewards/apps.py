from django.apps import AppConfig


class RewardsConfig(AppConfig):
    """Merchants, catalogue, redemption and vouchers: filled by the rewards issue."""

    name = "rewards"
    verbose_name = "Rewards"
