from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "backend.accounts"
    label = "accounts"
    verbose_name = "Accounts"

    def ready(self):
        # Not domain flow: a changed user row only drops the auth user cache (backend/accounts/authentication.py).
        from django.db.models.signals import post_delete, post_save

        from backend.accounts.authentication import user_changed
        from backend.accounts.models import User

        post_save.connect(user_changed, sender=User, dispatch_uid="auth-user-cache")
        post_delete.connect(user_changed, sender=User, dispatch_uid="auth-user-cache-delete")
