"""Buying credits: the active packs, a buyer's own checkout sessions (their access funnel) and
creating a Stripe Checkout Session for a pack."""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

import stripe
from django.conf import settings
from django.db.models import QuerySet
from django.http import Http404
from django.urls import reverse

from billing.models import CheckoutSession, CreditPack
from billing.stripe.client import PENDING_PREFIX, PaymentProviderError, stripe_client
from core.errors import InvalidRequest

if TYPE_CHECKING:
    from accounts.models import User

logger = logging.getLogger(__name__)


def credit_pack_list() -> QuerySet[CreditPack]:
    return CreditPack.objects.filter(active=True).order_by("sort", "price_cents")


def checkout_session_list_for_user(user: User) -> QuerySet[CheckoutSession]:
    """The user's own sessions that exist at Stripe (placeholder rows mid-creation are not shown)."""
    return (CheckoutSession.objects.filter(user=user).exclude(id__startswith=PENDING_PREFIX)
            .select_related("pack").order_by("-created_at"))


def checkout_session_get_for_user(user: User, session_id: str) -> CheckoutSession:
    """The access funnel for checkout sessions: only their buyer sees them; anyone else gets a 404,
    the same answer as for an id that does not exist."""
    session = checkout_session_list_for_user(user).filter(pk=session_id).first()
    if session is None:
        raise Http404("No such checkout session.")
    return session


# --- creating a session ----------------------------------------------------------------------------

def _absolute(path: str) -> str:
    return f"{settings.SITE_URL.rstrip('/')}{path}"


def checkout_session_create(*, user: User, pack_code: str) -> CheckoutSession:
    """Create a Stripe Checkout Session (one-off payment) for a credit pack and return our row, whose
    `url` is Stripe's hosted payment page.

    Not one transaction on purpose: no database transaction is held open across a call to Stripe.
    Our row is committed first, with a uuid that makes the Idempotency-Key ("checkout-<uuid>", ref
    §6.4), so the SDK's own retries of a timed-out request return the same session rather than a
    second one. If Stripe refuses or cannot be reached the row is removed: nobody has the session's
    url, so nothing can be paid on it. If Stripe created a session but our final write was lost,
    the webhook still credits it from the session's metadata (see events._session_for_event)."""
    client = stripe_client()
    pack = credit_pack_list().filter(code=pack_code).first()
    if pack is None:
        raise InvalidRequest("No such credit pack.", fields={"pack": ["Choose one of the offered credit packs."]})
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": [{"quantity": 1, "price_data": {
            "currency": pack.currency, "unit_amount": pack.price_cents,
            "product_data": {"name": pack.name, "description": f"{pack.credits} studio credits"},
        }}],
        "client_reference_id": str(user.pk),
        "customer_email": user.email,
        "metadata": {"pack": pack.code, "user": str(user.pk)},
        # Stripe substitutes {CHECKOUT_SESSION_ID}; the success page only shows status, it never credits.
        "success_url": _absolute(reverse("studio:credits-success")) + "?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": _absolute(reverse("studio:credits")) + "?canceled=1",
    }
    order = uuid.uuid4()
    placeholder = f"{PENDING_PREFIX}{order.hex}"
    CheckoutSession.objects.create(id=placeholder, user=user, pack=pack, credits=pack.credits,
                                   amount_total=pack.price_cents, currency=pack.currency)
    try:
        remote = client.v1.checkout.sessions.create(params=params, options={"idempotency_key": f"checkout-{order}"})
    except stripe.StripeError as exc:
        CheckoutSession.objects.filter(pk=placeholder).delete()
        logger.warning("stripe refused checkout session for user %s: %s", user.pk, exc)
        raise PaymentProviderError("Stripe could not start the payment; nothing was charged. Try again shortly.")
    data = remote.to_dict()
    # The row's key becomes Stripe's id. Nothing refers to a CheckoutSession, so renaming the key
    # touches one row; a webhook for this session cannot arrive before the buyer has the url.
    CheckoutSession.objects.filter(pk=placeholder).update(
        id=data["id"], url=data.get("url") or "", amount_total=data.get("amount_total") or pack.price_cents,
        currency=data.get("currency") or pack.currency)
    return CheckoutSession.objects.select_related("pack").get(pk=data["id"])
