from django.urls import path

from backend.actions import apis, link_apis

urlpatterns = [
    path("partner/actions", apis.PartnerActionsView.as_view(), name="partner-actions"),
    path("partner/actions/<str:external_id>", apis.PartnerActionDetailView.as_view(), name="partner-action"),
    path("partner/links", link_apis.PartnerLinksView.as_view(), name="partner-links"),
    path("me/link-codes", link_apis.LinkCodesView.as_view(), name="me-link-codes"),
    path("me/bindings", link_apis.BindingsView.as_view(), name="me-bindings"),
    path("me/bindings/<int:binding_id>", link_apis.BindingDetailView.as_view(), name="me-binding"),
    path("me/actions", apis.MyActionsView.as_view(), name="me-actions"),
    path("me/actions/<int:action_id>", apis.MyActionDetailView.as_view(), name="me-action"),
    path("admin/reviews", apis.ReviewListView.as_view(), name="admin-reviews"),
    path("admin/reviews/<int:action_id>/approve", apis.ReviewApproveView.as_view(), name="admin-review-approve"),
    path("admin/reviews/<int:action_id>/reject", apis.ReviewRejectView.as_view(), name="admin-review-reject"),
]
