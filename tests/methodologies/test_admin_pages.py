"""Reviewers' admin pages: the site's identity (zh-hans and en), transitions on a version's own page with a note
(through the services), the impact preview as a chart, partner methodologies as checkboxes."""

from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.test import Client
from django.utils import timezone

from backend.methodologies import services
from backend.methodologies.models import ImpactPreview, MethodologyVersion, PointsPolicyVersion
from backend.partners.models import Partner
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def staff(user, language="en") -> Client:
    client = Client(headers={"accept-language": language})
    client.post("/admin/login/", {"username": user.raw_phone, "password": PASSWORD})
    assert "_auth_user_id" in client.session
    return client


def draft(author, start=None):
    version = services.methodology_version_create_draft(code="bus_ride", author=author)
    params = dict(version.parameters)
    params["baseline_g_per_pkm"] = {**params["baseline_g_per_pkm"], "value": "80"}
    services.methodology_version_update_draft(
        version_id=version.id,
        actor=author,
        parameters=params,
        effective_from=start or timezone.now() + timedelta(days=2),
    )
    return version


def page(version) -> str:
    return f"/admin/methodologies/methodologyversion/{version.pk}/"


@pytest.mark.parametrize(
    ("language", "header", "title", "phone"),
    [("en", "青碳行 administration", "青碳行 admin", "Phone"), ("zh-hans", "青碳行管理后台", "青碳行管理", "手机号")],
)
def test_the_site_is_branded_asks_for_a_phone_and_greets_the_display_name(make_user, language, header, title, phone):
    reviewer = make_user(role="reviewer", display_name="Wang Fang")
    login = Client(headers={"accept-language": language}).get("/admin/login/").content.decode()
    assert f">{header}</a>" in login and f"| {title}</title>" in login
    assert f'<label class="required" for="id_username">{phone}:</label>' in login or f">{phone}" in login
    assert "Phone hash" not in login and "phone hash" not in login
    index = staff(reviewer, language).get("/admin/").content.decode()
    assert "<strong>Wang Fang</strong>" in index
    assert reviewer.phone_hash not in index


def test_submit_then_approve_on_the_versions_page_with_a_note(make_user):
    author, reviewer = make_user(role="reviewer"), make_user(role="reviewer")
    version = draft(author)
    assert "version-submit" in staff(author).get(f"{page(version)}change/").content.decode()

    confirm = staff(author).get(f"{page(version)}transition/submit/")
    assert confirm.status_code == 200 and 'name="note"' in confirm.content.decode()  # a confirmation page first
    no_note = staff(author).post(f"{page(version)}transition/submit/", {"note": ""})
    assert no_note.status_code == 200 and MethodologyVersion.objects.get(pk=version.pk).status == "draft"
    done = staff(author).post(f"{page(version)}transition/submit/", {"note": "Ready"})
    assert done.status_code == 302 and done["Location"].endswith(f"{version.pk}/change/")

    own = staff(author).post(f"{page(version)}transition/approve/", {"note": "Mine"}, follow=True)
    assert MethodologyVersion.objects.get(pk=version.pk).status == "in_review"  # four eyes: the service refuses
    assert "Approve:" in own.content.decode()
    staff(reviewer).post(f"{page(version)}transition/approve/", {"note": "Checked the survey"})
    version.refresh_from_db()
    assert version.status == "approved" and version.decided_by_id == reviewer.pk
    assert version.decision_note == "Checked the survey"
    assert LogEntry.objects.filter(object_id=str(version.pk), change_message="Approve: Checked the survey").exists()


def test_reject_and_unknown_transitions_and_other_roles(make_user):
    author, reviewer, admin = make_user(role="reviewer"), make_user(role="reviewer"), make_user(role="admin")
    version = draft(author)
    services.methodology_version_submit(version_id=version.id, actor=author)
    assert staff(reviewer).get(f"{page(version)}transition/teleport/").status_code == 404
    assert staff(reviewer).get("/admin/methodologies/methodologyversion/999999/transition/approve/").status_code == 404
    resident = Client()
    assert resident.post(f"{page(version)}transition/reject/", {"note": "x"}).status_code == 302  # to the login
    staff(admin).post(f"{page(version)}transition/reject/", {"note": "Sources missing"})
    assert MethodologyVersion.objects.get(pk=version.pk).status == "rejected"


def test_points_policy_version_has_the_same_buttons(make_user):
    author, reviewer = make_user(role="reviewer"), make_user(role="reviewer")
    version = services.points_policy_version_create_draft(author=author)
    services.points_policy_version_update_draft(
        version_id=version.id, actor=author, effective_from=timezone.now() + timedelta(days=2)
    )
    url = f"/admin/methodologies/pointspolicyversion/{version.pk}/"
    assert "version-submit" in staff(author).get(f"{url}change/").content.decode()
    staff(author).post(f"{url}transition/submit/", {"note": "Ready"})
    staff(reviewer).post(f"{url}transition/approve/", {"note": "OK"})
    assert PointsPolicyVersion.objects.get(pk=version.pk).status == "approved"


def test_preview_is_requested_from_the_page_and_shown_as_a_chart(make_user, django_capture_on_commit_callbacks):
    author = make_user(role="reviewer")
    version = draft(author)
    with django_capture_on_commit_callbacks(execute=False):
        staff(author).post(f"{page(version)}transition/preview/", {"note": "How much changes?"})
    preview = ImpactPreview.objects.get(version=version)
    result = {
        "totals": {"actions": 3, "current_grams": 900, "preview_grams": 1000, "delta_grams": 100},
        "by_district": [
            {"district": "370202", "actions": 2, "current_grams": 600, "preview_grams": 720, "delta_grams": 120},
            {
                "district": "370203<script>",
                "actions": 1,
                "current_grams": 300,
                "preview_grams": 280,
                "delta_grams": -20,
            },
        ],
        "residents_affected": 2,
        "largest_changes": [
            {"resident_id": 7, "district": "370202", "current_grams": 600, "preview_grams": 720, "delta_grams": 120}
        ],
    }
    ImpactPreview.objects.filter(pk=preview.pk).update(status="done", result=result, progress_done=3, progress_total=3)
    html = staff(author).get(f"{page(version)}change/").content.decode()
    assert html.count('<svg xmlns="http://www.w3.org/2000/svg" class="impact-chart"') == 2
    assert "Change by district" in html and "Largest changes" in html and "resident #7 (370202)" in html
    assert "+120" in html and "-20" in html and "Total change: +100 g CO2e" in html
    assert "370203<script>" not in html and "370203&lt;script&gt;" in html  # labels escaped
    chinese = staff(author, "zh-hans").get(f"{page(version)}change/").content.decode()
    assert "各区变化" in chinese and "居民 #7（370202）" in chinese and "总变化：+100 克 CO2e" in chinese
    assert "Change by district" not in chinese and "Total change" not in chinese
    assert '"by_district"' not in html  # no raw JSON
    detail = staff(author).get(f"/admin/methodologies/impactpreview/{preview.pk}/change/").content.decode()
    assert "impact-chart" in detail


def test_partner_methodologies_are_set_with_checkboxes(make_user, partner):
    admin = make_user(role="admin")
    client = staff(admin)
    selection = {"action": "set_methodologies", "_selected_action": [partner.pk]}
    form = client.post("/admin/partners/partner/", selection).content.decode()
    assert 'type="checkbox" name="methodologies" value="metro_ride"' in form
    client.post(
        "/admin/partners/partner/",
        {**selection, "confirm": "yes", "note": "Metro only now", "methodologies": ["metro_ride", "bike_ride"]},
    )
    assert Partner.objects.get(pk=partner.pk).methodologies == ["bike_ride", "metro_ride"]
