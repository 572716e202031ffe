"""Billing's API and Stripe's webhook. Included from config/urls.py with `path("", include("billing.urls"))`
ahead of the generic `webhooks/<str:provider>` route, which would otherwise answer /webhooks/stripe."""

from django.urls import path

from billing.api import (
    CheckoutSessionDetailView,
    CheckoutSessionListCreateView,
    CreditPackListView,
    StripeWebhookView,
)

urlpatterns = [
    path("api/v1/credit-packs", CreditPackListView.as_view(), name="credit-packs"),
    path("api/v1/checkout-sessions", CheckoutSessionListCreateView.as_view(), name="checkout-sessions"),
    path("api/v1/checkout-sessions/<str:session_id>", CheckoutSessionDetailView.as_view(), name="checkout-session"),
    path("webhooks/stripe", StripeWebhookView.as_view(), name="stripe-webhook"),
]
