"""Included under api/v1/ by config/urls.py."""

from django.urls import path

from billing.usage.api import ReferralCodeView, ReferralRedeemView, UsageCsvView, UsageView

urlpatterns = [
    path("usage", UsageView.as_view(), name="usage"),
    path("usage.csv", UsageCsvView.as_view(), name="usage-csv"),
    path("referrals/code", ReferralCodeView.as_view(), name="referral-code"),
    path("referrals/redeem", ReferralRedeemView.as_view(), name="referral-redeem"),
]
