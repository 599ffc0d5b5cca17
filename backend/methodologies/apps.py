from django.apps import AppConfig


class MethodologiesConfig(AppConfig):
    name = "backend.methodologies"
    label = "methodologies"
    verbose_name = "Methodologies"

    def ready(self):
        from backend.celery import add_beat_entry
        from backend.core.seeding import register_seeder
        from backend.methodologies import services

        register_seeder("methodologies", present=services.methodologies_present)(services.methodologies_seed)
        register_seeder("points_policy", present=services.points_policy_present)(services.points_policy_seed)
        add_beat_entry("methodologies-activate-due", "methodologies.activate_due_versions", 60.0)
