from backend.accounts.models import Consent, District, User


def district_list():
    return District.objects.all()


def consent_list(*, user: User):
    return Consent.objects.filter(user=user).order_by("-granted_at", "-id")


def user_get(*, user_id: int) -> User:
    return User.objects.select_related("district").get(pk=user_id)
