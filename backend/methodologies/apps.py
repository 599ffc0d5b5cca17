from django.apps import AppConfig


class MethodologiesConfig(AppConfig):
    name = "backend.methodologies"
    label = "methodologies"
    verbose_name = "Methodologies"

    def ready(self):
        # Cache invalidation only (backend/methodologies/cache.py), no domain flow.
        from django.db.models.signals import post_delete, post_save

        from backend.methodologies.cache import methodologies_changed
        from backend.methodologies.models import Methodology, MethodologyVersion

        for model in (Methodology, MethodologyVersion):
            post_save.connect(methodologies_changed, sender=model, dispatch_uid=f"list-cache-save-{model.__name__}")
            post_delete.connect(methodologies_changed, sender=model, dispatch_uid=f"list-cache-del-{model.__name__}")
