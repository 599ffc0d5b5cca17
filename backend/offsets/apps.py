from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class OffsetsConfig(AppConfig):
    name = "backend.offsets"
    label = "offsets"
    verbose_name = _("Offsets")
