from django.apps import AppConfig


class OffsetsConfig(AppConfig):
    name = "backend.offsets"
    label = "offsets"
    verbose_name = "Offsets"

    def ready(self):
        from backend.accounts.services import ERASURE_HOOKS
        from backend.celery import add_beat_entry
        from backend.offsets.services import offsets_erase_personal_data

        # Every minute: an unpaid reservation is released within a minute of its 30 minutes running out.
        add_beat_entry("offsets-expire-reservations", "offsets.reservations_expire", 60.0)
        # Webhook events recorded but not processed (a lost enqueue) are picked up again.
        add_beat_entry("offsets-stripe-events-retry", "offsets.stripe_events_retry", 300.0)
        if offsets_erase_personal_data not in ERASURE_HOOKS:
            ERASURE_HOOKS.append(offsets_erase_personal_data)
