"""Our own admin screens speak the reviewer's language: Simplified Chinese by default (the site's LANGUAGE_CODE),
English on request. Before this, the templates, action names and messages of our apps were English inside an
otherwise Chinese admin."""

import re

import pytest
from django.contrib import admin
from django.test import Client
from django.utils import timezone, translation

from backend.offsets.chart import fund_chart_svg, yuan
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db
CJK = re.compile(r"[\u4e00-\u9fff]")

# (page, a phrase shown in Chinese, the same phrase in English)
PAGES = [
    ("/admin/", "低碳行为", "Ingest batches"),
    ("/admin/offsets/offsetorder/", "奖励基金", "Reward fund"),
    ("/admin/offsets/offsetorder/", "账本对账一致。", "the ledger reconciles."),
    ("/admin/offsets/certificationbatch/", "核证一个批次", "Certify a batch"),
    ("/admin/offsets/certificationbatch/certify/", "尚未归入任何批次", "that are in no batch yet"),
    ("/admin/stats/dashboard/", "各方法学每日减排量", "Grams CO2e per day by methodology"),
    ("/admin/stats/dashboard/", "规划目标", "Plan target"),
]


def admin_client(user, language=None) -> Client:
    client = Client(headers={"accept-language": language}) if language else Client()
    assert client.login(username=user.raw_phone, password=PASSWORD)
    return client


@pytest.mark.parametrize(("url", "chinese", "english"), PAGES)
def test_our_admin_pages_are_chinese_by_default_and_english_on_request(make_user, url, chinese, english):
    admin = make_user(role="admin")
    default = admin_client(admin).get(url)
    assert default.status_code == 200
    assert chinese in default.content.decode() and english not in default.content.decode()
    asked = admin_client(admin, "en").get(url).content.decode()
    assert english in asked and chinese not in asked


def test_every_action_and_column_of_our_admins_has_a_chinese_name(rf, make_user):
    """Action names show only on a list with rows, so they are checked on the ModelAdmins themselves."""
    request = rf.get("/admin/")
    request.user = make_user(role="admin")
    ours = [m for m in admin.site._registry.values() if m.__module__.startswith(("backend.", "rewards."))]
    names = []
    for model_admin in ours:
        names += [description for _, _, description in model_admin._get_base_actions() if description]
        for column in model_admin.list_display:
            attribute = getattr(model_admin, column, None) if isinstance(column, str) else column
            if callable(attribute) and hasattr(attribute, "short_description"):
                names.append(attribute.short_description)
    assert len(names) > 20
    with translation.override("zh-hans"):
        untranslated = [str(name) for name in names if not CJK.search(str(name) % {"verbose_name_plural": ""})]
    assert untranslated == []


def test_every_model_and_app_of_ours_in_the_admin_has_a_chinese_name():
    ours = [model for model in admin.site._registry if model.__module__.startswith(("backend.", "rewards."))]
    assert len(ours) > 20
    with translation.override("zh-hans"):
        names = [str(model._meta.verbose_name) for model in ours]
        names += [str(model._meta.verbose_name_plural) for model in ours]
        names += sorted({str(model._meta.app_config.verbose_name) for model in ours})
    assert [name for name in names if not CJK.search(name)] == []


def test_a_confirmation_page_and_its_note_are_chinese(make_user, resident):
    from backend.actions.models import Action

    action = Action.objects.create(
        resident=resident,
        methodology="bus_ride",
        status="flagged",
        source="self_report",
        occurred_at=timezone.now(),
        needs_review=True,
    )
    reviewer = make_user(role="reviewer")
    page = admin_client(reviewer).post("/admin/actions/action/", {"action": "approve", "_selected_action": [action.pk]})
    html = page.content.decode()
    assert page.status_code == 200
    assert "已选 1 项：" in html and 'value="确认"' in html and "原因（连同您的姓名记入管理日志）。" in html
    assert not re.search(r"\b(selected:|Confirm|Why \(kept)", html)


def test_fund_chart_writes_yuan_by_integer_division_never_through_float():
    # 2**53 + 1 fen is where a float stops being exact: the last digit would be lost.
    assert yuan(2**53 + 1) == "90,071,992,547,409.93"
    assert yuan(5) == "0.05" and yuan(-123456) == "-1,234.56" and yuan(0) == "0.00"
    svg = str(fund_chart_svg(balance=-500, payables=1_000, deficit=0))
    assert 'width="0"' in svg  # a negative balance draws no bar (it used to draw a negative width)
    assert "¥-5.00" in svg and "¥10.00" in svg
