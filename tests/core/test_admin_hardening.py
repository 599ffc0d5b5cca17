"""The admin cannot bypass the services: login lockout, read-only value-bearing screens, writes only through
confirmed admin actions with a note, permissions per role and screen, rotated secrets never in a cookie."""

import pytest
from django.contrib import admin
from django.test import Client, override_settings

from backend.accounts.models import User
from backend.actions.models import Action, IngestBatch, SubjectBinding
from backend.partners.models import Partner
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db
LOGIN = "/admin/login/?next=/admin/"


def admin_login(client, phone, password):
    return client.post(LOGIN, {"username": phone, "password": password})


def logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def form_error_codes(response) -> set[str]:
    return {error.code for error in response.context["form"].non_field_errors().as_data()}


def staff_client(user) -> Client:
    client = Client()
    admin_login(client, user.raw_phone, PASSWORD)
    assert logged_in(client)
    return client


# --- login lockout ----------------------------------------------------------------------------------------


def test_admin_login_locks_after_five_failures_then_the_right_password_fails_too(make_user):
    reviewer = make_user(role="reviewer")
    client = Client()
    for _ in range(12):
        admin_login(client, reviewer.raw_phone, "wrong-password")
    response = admin_login(client, reviewer.raw_phone, PASSWORD)
    assert not logged_in(client)
    assert response.status_code == 200 and form_error_codes(response) == {"login_locked"}


def test_admin_login_lockout_is_per_phone_and_the_right_password_clears_it(make_user):
    reviewer, other = make_user(role="reviewer"), make_user(role="reviewer")
    client = Client()
    for _ in range(4):
        admin_login(client, reviewer.raw_phone, "wrong-password")
    admin_login(client, reviewer.raw_phone, PASSWORD)
    assert logged_in(client)
    for _ in range(6):
        admin_login(Client(), other.raw_phone, "wrong-password")
    assert staff_client(reviewer)  # another number's lockout does not touch this one


def test_admin_login_fails_closed_without_redis(make_user, settings, throwaway_redis):
    reviewer = make_user(role="reviewer")
    caches = {"default": {**settings.CACHES["default"], "LOCATION": throwaway_redis.url}}
    if "redis" not in caches["default"]["BACKEND"]:
        pytest.skip("needs the Redis cache (make test)")
    throwaway_redis.stop()
    client = Client()
    with override_settings(CACHES=caches):
        response = admin_login(client, reviewer.raw_phone, PASSWORD)
    assert not logged_in(client)
    assert form_error_codes(response) == {"login_unavailable"}


# --- permissions per role and screen --------------------------------------------------------------------

SCREENS = {
    "/admin/": {"reviewer": 200, "admin": 200},
    "/admin/actions/": {"reviewer": 200, "admin": 200},
    "/admin/actions/action/": {"reviewer": 200, "admin": 200},
    "/admin/actions/ingestbatch/": {"reviewer": 200, "admin": 200},
    "/admin/actions/subjectbinding/": {"reviewer": 403, "admin": 200},
    "/admin/methodologies/methodologyversion/": {"reviewer": 200, "admin": 200},
    "/admin/methodologies/pointspolicyversion/": {"reviewer": 200, "admin": 200},
    "/admin/methodologies/impactpreview/": {"reviewer": 200, "admin": 200},
    "/admin/methodologies/methodology/": {"reviewer": 200, "admin": 200},
    "/admin/partners/partner/": {"reviewer": 403, "admin": 200},
    "/admin/accounts/user/": {"reviewer": 403, "admin": 200},
    "/admin/ledger/ledgertransaction/": {"reviewer": 200, "admin": 200},
    "/admin/ledger/account/": {"reviewer": 200, "admin": 200},
}


@pytest.mark.parametrize("role", ["resident", "merchant_staff", "reviewer", "admin"])
def test_each_role_reaches_exactly_its_screens(make_user, role):
    user = make_user(role=role)
    client = Client()
    admin_login(client, user.raw_phone, PASSWORD)
    for url, allowed in SCREENS.items():
        response = client.get(url)
        expected = allowed.get(role, 302)  # residents and merchant staff are sent back to the login page
        assert response.status_code == expected, (role, url, response.status_code)
        if expected == 302:
            assert "/admin/login/" in response["Location"]


# --- read-only, nothing value-bearing deletable ------------------------------------------------------------


def test_no_delete_anywhere_and_value_bearing_screens_read_only(make_user, rf):
    superuser = make_user(role="admin")
    request = rf.get("/admin/")
    request.user = superuser
    assert "delete_selected" not in dict(admin.site.actions)
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label == "auth":
            continue  # Django's permission groups carry no value
        assert not model_admin.has_delete_permission(request), f"{model._meta.label} deletable in the admin"
        assert "delete_selected" not in model_admin.get_actions(request), model
    from backend.ledger.models import Account, LedgerTransaction

    for model in (Action, SubjectBinding, IngestBatch, Account, LedgerTransaction, User, Partner):
        model_admin = admin.site._registry[model]
        assert not model_admin.has_add_permission(request), model
        assert not model_admin.has_change_permission(request), model


def test_user_admin_cannot_set_role_or_status_directly(make_user):
    superuser, resident = make_user(role="admin"), make_user()
    client = staff_client(superuser)
    client.post(
        f"/admin/accounts/user/{resident.pk}/change/",
        {"display_name": "x", "role": "admin", "status": "erased", "is_active": "on"},
    )
    resident.refresh_from_db()
    assert (resident.role, resident.status, resident.display_name) == ("resident", "active", "居民")
    assert client.get(f"/admin/accounts/user/{resident.pk}/delete/").status_code == 403


def test_action_cannot_be_edited_or_deleted_in_the_admin(make_user, partner):
    superuser = make_user(role="admin")
    action = Action.objects.create(
        source="self_report", resident=make_user(), methodology="reusable_cup", occurred_at="2026-11-20T10:00Z"
    )
    client = staff_client(superuser)
    client.post(f"/admin/actions/action/{action.pk}/change/", {"status": "credited", "review_note": "x"})
    action.refresh_from_db()
    assert (action.status, action.review_note) == ("received", "")
    assert client.get(f"/admin/actions/action/{action.pk}/delete/").status_code == 403
    response = client.post("/admin/actions/action/", {"action": "delete_selected", "_selected_action": [action.pk]})
    assert Action.objects.filter(pk=action.pk).exists()
    assert response.status_code in (200, 302)


# --- writes through services: confirmation page and note --------------------------------------------------


def test_user_erasure_in_the_admin_goes_through_the_service_with_a_confirmation_and_note(make_user):
    superuser, resident = make_user(role="admin"), make_user()
    client = staff_client(superuser)
    selection = {"action": "erase_users", "_selected_action": [resident.pk]}
    confirm = client.post("/admin/accounts/user/", selection)
    assert confirm.status_code == 200 and "note" in confirm.content.decode()
    resident.refresh_from_db()
    assert resident.status == "active"  # nothing happened before the confirmation
    refused = client.post("/admin/accounts/user/", {**selection, "confirm": "yes", "note": ""})
    assert refused.status_code == 200
    resident.refresh_from_db()
    assert resident.status == "active"  # a note is required
    done = client.post("/admin/accounts/user/", {**selection, "confirm": "yes", "note": "Written request #42"})
    assert done.status_code == 302
    resident.refresh_from_db()
    assert resident.status == "erased" and resident.phone_encrypted == "" and resident.phone_hash is None
    from django.contrib.admin.models import LogEntry

    assert LogEntry.objects.filter(object_id=str(resident.pk), change_message__contains="Written request #42").exists()


def test_role_change_goes_through_the_service(make_user):
    superuser, resident = make_user(role="admin"), make_user()
    client = staff_client(superuser)
    selection = {"action": "change_role", "_selected_action": [resident.pk]}
    done = client.post("/admin/accounts/user/", {**selection, "confirm": "yes", "note": "Hired", "role": "reviewer"})
    assert done.status_code == 302
    resident.refresh_from_db()
    assert resident.role == "reviewer"


def test_review_in_the_admin_needs_confirmation_and_a_note(make_user, seeded, settings, tmp_path):
    from tests.actions.test_self_report import post_report, self_report_methodology
    from tests.conftest import client_for

    settings.MEDIA_ROOT = tmp_path
    resident, reviewer = make_user(), make_user(role="reviewer")
    action_id = post_report(client_for(resident), self_report_methodology()).json()["id"]
    client = staff_client(reviewer)
    selection = {"action": "reject", "_selected_action": [action_id]}
    assert client.post("/admin/actions/action/", selection).status_code == 200
    assert Action.objects.get(pk=action_id).status == "pending_review"
    client.post("/admin/actions/action/", {**selection, "confirm": "yes", "note": "Photo is a stock image"})
    action = Action.objects.get(pk=action_id)
    assert (action.status, action.review_note, action.reviewed_by_id) == (
        "rejected",
        "Photo is a stock image",
        reviewer.pk,
    )


def test_partner_v1_switch_is_an_admin_action(make_user, partner):
    client = staff_client(make_user(role="admin"))
    selection = {"action": "refuse_signature_v1", "_selected_action": [partner.pk]}
    client.post("/admin/partners/partner/", {**selection, "confirm": "yes", "note": "Moved to v2"})
    assert Partner.objects.get(pk=partner.pk).signature_v1_allowed is False
    assert "signature_v1_allowed" in client.get("/admin/partners/partner/").content.decode()


def test_rotated_secret_is_shown_once_on_its_own_page_never_in_a_message(make_user, partner):
    client = staff_client(make_user(role="admin"))
    selection = {"action": "rotate_secret", "_selected_action": [partner.pk]}
    response = client.post("/admin/partners/partner/", {**selection, "confirm": "yes", "note": "Quarterly rotation"})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    page = response.content.decode()
    from backend.core.crypto import decrypt

    newest = partner.secrets.order_by("-created_at", "-id").first()
    secret = decrypt(newest.secret_encrypted)
    assert secret in page
    cookies = " ".join(morsel.value for morsel in client.cookies.values())
    assert secret not in cookies
    assert secret not in client.get("/admin/partners/partner/").content.decode()
    assert secret not in client.get(f"/admin/partners/partner/{partner.pk}/change/").content.decode()
