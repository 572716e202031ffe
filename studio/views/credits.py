"""Buying credits: the pack list, the hop to Stripe Checkout, and the page Stripe sends the buyer back to.

The return page never credits anything (anyone can open a success url); it shows the session as the
webhook left it and polls until Stripe's confirmation has been handled (ref
docs/STRIPE.md, "The wire protocol" §6.2: fulfil from webhooks)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET, require_POST

from billing.models import CheckoutSession, CheckoutStatus
from billing.services import credits_summary
from billing.stripe.checkout import (
    checkout_session_create,
    checkout_session_get_for_user,
    checkout_session_list_for_user,
    credit_pack_list,
)
from billing.stripe.client import payments_enabled
from core.errors import ServiceError

TEMPLATE = "studio/credits.html"
RECENT_PURCHASES = 10


def price(cents: int, currency: str) -> str:
    """'$5.00' for dollars; '18.00 EUR' for any other currency (Stripe amounts are in minor units)."""
    amount = f"{Decimal(cents) / 100:,.2f}"
    return f"${amount}" if currency.lower() == "usd" else f"{amount} {currency.upper()}"


def _buy_context(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    packs = [(pack, price(pack.price_cents, pack.currency)) for pack in credit_pack_list()]
    return {"mode": "buy", "packs": packs,
            "payments_enabled": payments_enabled(),
            "purchases": list(checkout_session_list_for_user(request.user)[:RECENT_PURCHASES]),
            "canceled": request.GET.get("canceled") == "1", **extra}


@login_required
@require_GET
def credits_page(request: HttpRequest) -> HttpResponse:
    return render(request, TEMPLATE, _buy_context(request))


@login_required
@require_POST
def credits_checkout(request: HttpRequest) -> HttpResponse:
    try:
        session = checkout_session_create(user=request.user, pack_code=request.POST.get("pack", ""))
    except ServiceError as exc:
        return render(request, TEMPLATE, _buy_context(request, error=exc.message), status=exc.http_status)
    return redirect(session.url)


def _session_from_query(request: HttpRequest) -> CheckoutSession | None:
    session_id = request.GET.get("session_id", "")
    return checkout_session_get_for_user(request.user, session_id) if session_id else None


@login_required
@require_GET
def credits_success(request: HttpRequest) -> HttpResponse:
    session = _session_from_query(request)
    context = {"mode": "success", "session": session}
    if request.htmx and request.GET.get("partial") == "status":
        fragment = render_to_string(f"{TEMPLATE}#checkout-status", context, request)
        if session is None or session.status == CheckoutStatus.OPEN:
            return HttpResponse(fragment)
        # 286: htmx stops polling; the header's credits are swapped in with the final answer.
        header = render_to_string("studio/_credits.html", {"credits": credits_summary(user=request.user),
                                                            "oob": True}, request)
        return HttpResponse(fragment + header, status=286)
    return render(request, TEMPLATE, context)
