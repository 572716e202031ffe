"""Stripe's configuration and SDK client, the errors a buyer or the API sees when Stripe is missing or
failing, and the key prefixes the other Stripe modules share."""

from __future__ import annotations

import stripe
from django.conf import settings
from rest_framework import status

from core.errors import ServiceError

STRIPE_CODE = "stripe"
# Our CheckoutSession row is written before Stripe is called (its uuid is the idempotency key), under
# this placeholder id; Stripe's cs_… id replaces it once Stripe answers.
PENDING_PREFIX = "pending_"
TOPUP_PREFIX = "stripe:checkout:"  # + cs_id: the one posting that credits a session


class PaymentsNotConfigured(ServiceError):
    code = "payments_not_configured"
    http_status = status.HTTP_503_SERVICE_UNAVAILABLE

    def __init__(self) -> None:
        super().__init__("Payments are not configured on this server: credits cannot be bought here yet.")


class PaymentProviderError(ServiceError):
    code = "payment_provider_error"
    http_status = status.HTTP_502_BAD_GATEWAY


def payments_enabled() -> bool:
    return bool(getattr(settings, "STRIPE_SECRET_KEY", ""))


def stripe_client() -> stripe.StripeClient:
    if not payments_enabled():
        raise PaymentsNotConfigured()
    api_base = getattr(settings, "STRIPE_API_BASE", "")
    # ref §6.1: base_addresses={"api": …} points the SDK at a local fake (tests) or a proxy. The SDK
    # retries 409, 5xx and connection errors itself, reusing the request's Idempotency-Key.
    return stripe.StripeClient(settings.STRIPE_SECRET_KEY, base_addresses={"api": api_base} if api_base else None,
                               max_network_retries=2)
