from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MethodologiesConfig(AppConfig):
    name = "backend.methodologies"
    label = "methodologies"
    verbose_name = _("Methodologies")
