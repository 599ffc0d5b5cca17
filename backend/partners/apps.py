from django.apps import AppConfig


class PartnersConfig(AppConfig):
    name = "backend.partners"
    label = "partners"
    verbose_name = "Partners"

    def ready(self):
        from backend.celery import add_beat_entry

        add_beat_entry("partners-prune-nonces", "partners.prune_nonces", 3600.0)
