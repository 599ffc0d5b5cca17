from django.urls import path

from backend.accounts import apis

urlpatterns = [
    path("auth/register", apis.RegisterView.as_view(), name="auth-register"),
    path("auth/token", apis.TokenObtainView.as_view(), name="auth-token"),
    path("auth/token/refresh", apis.TokenRefreshView.as_view(), name="auth-token-refresh"),
    path("auth/logout", apis.LogoutView.as_view(), name="auth-logout"),
    path("me", apis.MeView.as_view(), name="me"),
    path("me/consents", apis.ConsentsView.as_view(), name="me-consents"),
    path("districts", apis.DistrictListView.as_view(), name="districts"),
]
