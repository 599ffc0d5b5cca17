from django.apps import AppConfig


class MethodologiesConfig(AppConfig):
    name = "backend.methodologies"
    label = "methodologies"
    verbose_name = "Methodologies"
