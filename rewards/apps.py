from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class RewardsConfig(AppConfig):
    """Merchants, catalogue, two-phase redemption to vouchers, validation at the counter."""

    name = "rewards"
    verbose_name = _("Rewards")

