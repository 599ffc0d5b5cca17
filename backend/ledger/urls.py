from django.urls import path

from backend.ledger import apis

urlpatterns = [
    path("me/wallet", apis.WalletView.as_view(), name="me-wallet"),
    path("me/ledger", apis.LedgerListView.as_view(), name="me-ledger"),
    path("me/ledger/<int:transaction_id>/proof", apis.LedgerProofView.as_view(), name="me-ledger-proof"),
    path("public/ledger/roots", apis.PublicRootsView.as_view(), name="public-ledger-roots"),
]
