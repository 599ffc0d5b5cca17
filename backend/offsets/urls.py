from django.urls import path

from backend.offsets import apis

urlpatterns = [
    path("offsets/batches", apis.BatchListCreateView.as_view(), name="offsets-batches"),
    path("offsets/orders", apis.OrderListCreateView.as_view(), name="offsets-orders"),
    path("offsets/certificates/<int:certificate_id>", apis.CertificateDetailView.as_view(), name="offsets-certificate"),
    path(
        "offsets/certificates/verify/<str:code>",
        apis.CertificateVerifyView.as_view(),
        name="offsets-certificate-verify",
    ),
    path("stripe/webhook", apis.StripeWebhookView.as_view(), name="stripe-webhook"),
]
