from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "backend.accounts"
    label = "accounts"
    verbose_name = "Accounts"

    def ready(self):
        from backend.accounts.models import District
        from backend.accounts.reference import districts_upsert
        from backend.core.seeding import register_seeder

        register_seeder("districts", present=lambda: f"{District.objects.count()} districts")(
            lambda: districts_upsert(District)
        )
