from django.apps import AppConfig


class PartnersConfig(AppConfig):
    name = "backend.partners"
    label = "partners"
    verbose_name = "Partners"

