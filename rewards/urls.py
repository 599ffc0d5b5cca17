from django.urls import path

from rewards import apis
from rewards import apis_merchant as m

urlpatterns = [
    path("rewards", apis.RewardListView.as_view(), name="rewards-list"),
    path("rewards/qr-key", apis.QrKeyView.as_view(), name="rewards-qr-key"),
    path("rewards/<int:reward_id>", apis.RewardDetailView.as_view(), name="rewards-detail"),
    path("rewards/<int:reward_id>/redeem", apis.RewardRedeemView.as_view(), name="rewards-redeem"),
    path("me/vouchers", apis.MyVouchersView.as_view(), name="me-vouchers"),
    path("me/vouchers/<str:code>", apis.MyVoucherDetailView.as_view(), name="me-voucher"),
    path("me/vouchers/<str:code>/cancel", apis.MyVoucherCancelView.as_view(), name="me-voucher-cancel"),
    path("merchant/rewards", m.MerchantRewardsView.as_view(), name="merchant-rewards"),
    path("merchant/rewards/<int:reward_id>", m.MerchantRewardDetailView.as_view(), name="merchant-reward"),
    path("merchant/rewards/<int:reward_id>/pause", m.MerchantRewardPauseView.as_view()),
    path("merchant/rewards/<int:reward_id>/resume", m.MerchantRewardResumeView.as_view()),
    path("merchant/rewards/<int:reward_id>/archive", m.MerchantRewardArchiveView.as_view()),
    path("merchant/rewards/<int:reward_id>/stock", m.MerchantRewardStockView.as_view()),
    path("merchant/rewards/<int:reward_id>/image", m.MerchantRewardImageView.as_view()),
    path("merchant/vouchers", m.MerchantVouchersView.as_view(), name="merchant-vouchers"),
    path("merchant/vouchers/scan", m.MerchantVoucherScanView.as_view(), name="merchant-voucher-scan"),
    path("merchant/vouchers/<str:code>/redeem", m.MerchantVoucherRedeemView.as_view(), name="merchant-voucher-redeem"),
    path("merchant/summary", m.MerchantSummaryView.as_view(), name="merchant-summary"),
    path("merchant/staff", m.MerchantStaffView.as_view(), name="merchant-staff"),
    path("merchant/staff/<int:user_id>", m.MerchantStaffDetailView.as_view(), name="merchant-staff-detail"),
]
