"""Every admin screen renders for an administrator (changelist, add form where allowed, one change form)."""

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import reverse

from tests.conftest import PASSWORD


@pytest.fixture
def admin_client(make_user):
    user = make_user(role="admin")
    client = Client()
    assert client.login(username=user.raw_phone, password=PASSWORD)
    return client


@pytest.mark.django_db
def test_every_admin_changelist_renders(admin_client, partner, resident):
    from backend.actions.services import binding_create

    binding_create(resident=resident, kind="transit_card", identifier="ADMIN-1")
    for model, model_admin in admin.site._registry.items():
        info = (model._meta.app_label, model._meta.model_name)
        response = admin_client.get(reverse(f"admin:{info[0]}_{info[1]}_changelist"))
        assert response.status_code == 200, (info, response.status_code)
        first = model_admin.get_queryset(response.wsgi_request).first()
        if first is not None:
            change = admin_client.get(reverse(f"admin:{info[0]}_{info[1]}_change", args=[first.pk]))
            assert change.status_code == 200, (info, "change", change.status_code)


@pytest.mark.django_db
def test_residents_cannot_open_the_admin(resident):
    client = Client()
    assert client.login(username=resident.raw_phone, password=PASSWORD) is True
    response = client.get("/admin/")
    assert response.status_code == 302  # back to the login page: residents are not staff
