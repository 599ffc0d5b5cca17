from django.urls import path

from backend.methodologies import apis

V = "admin/methodologies/<slug:code>/versions/<int:number>"
P = "admin/points-policy/versions/<int:number>"

urlpatterns = [
    path("methodologies", apis.MethodologyListView.as_view(), name="methodologies"),
    path(
        "methodologies/<slug:code>/versions", apis.MethodologyVersionHistoryView.as_view(), name="methodology-versions"
    ),
    path("methodologies/<slug:code>/calculate", apis.CalculateView.as_view(), name="methodology-calculate"),
    path("points-policy/versions", apis.PointsPolicyHistoryView.as_view(), name="points-policy-versions"),
    path(
        "admin/methodologies/<slug:code>/versions",
        apis.AdminMethodologyVersionsView.as_view(),
        name="admin-methodology-versions",
    ),
    path(V, apis.AdminMethodologyVersionDetailView.as_view(), name="admin-methodology-version"),
    path(f"{V}/submit", apis.AdminMethodologyVersionSubmitView.as_view(), name="admin-methodology-version-submit"),
    path(f"{V}/approve", apis.AdminMethodologyVersionApproveView.as_view(), name="admin-methodology-version-approve"),
    path(f"{V}/reject", apis.AdminMethodologyVersionRejectView.as_view(), name="admin-methodology-version-reject"),
    path(f"{V}/retire", apis.AdminMethodologyVersionRetireView.as_view(), name="admin-methodology-version-retire"),
    path(f"{V}/preview", apis.AdminImpactPreviewView.as_view(), name="admin-methodology-version-preview"),
    path(
        f"{V}/previews/<int:preview_id>", apis.AdminImpactPreviewDetailView.as_view(), name="admin-methodology-preview"
    ),
    path(
        "admin/points-policy/versions",
        apis.AdminPointsPolicyVersionsView.as_view(),
        name="admin-points-policy-versions",
    ),
    path(P, apis.AdminPointsPolicyVersionDetailView.as_view(), name="admin-points-policy-version"),
    path(f"{P}/submit", apis.AdminPointsPolicyVersionSubmitView.as_view(), name="admin-points-policy-version-submit"),
    path(
        f"{P}/approve", apis.AdminPointsPolicyVersionApproveView.as_view(), name="admin-points-policy-version-approve"
    ),
    path(f"{P}/reject", apis.AdminPointsPolicyVersionRejectView.as_view(), name="admin-points-policy-version-reject"),
    path(f"{P}/retire", apis.AdminPointsPolicyVersionRetireView.as_view(), name="admin-points-policy-version-retire"),
]
