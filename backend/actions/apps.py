from django.apps import AppConfig


class ActionsConfig(AppConfig):
    name = "backend.actions"
    label = "actions"
    verbose_name = "Actions"

