from django.apps import AppConfig


class OffsetsConfig(AppConfig):
    name = "backend.offsets"
    label = "offsets"
    verbose_name = "Offsets"
