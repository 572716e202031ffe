"""Reconciling Stripe with the ledger: the reads `manage.py stripe_reconcile` reports (paid without
credits, credits without payment, parked refunds, flagged wallets, stale rows), and asking Stripe
about a session whose webhook never came, crediting it when Stripe says it is paid."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import stripe
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet, Value
from django.db.models.fields.json import KT
from django.db.models.functions import Concat, Substr
from django.utils import timezone

from billing.models import CheckoutSession, CheckoutStatus, StripeEvent, Transaction, WalletFlag
from billing.stripe.client import PENDING_PREFIX, STRIPE_CODE, TOPUP_PREFIX, PaymentProviderError, stripe_client
from billing.stripe.events import NOT_OURS
from billing.stripe.ledger import credits_topup, stripe_events_lock


def checkout_session_retrieve(*, session_id: str) -> dict[str, Any]:
    """Stripe's current view of one session (for reconciliation), as plain data."""
    try:
        return stripe_client().v1.checkout.sessions.retrieve(session_id).to_dict()
    except stripe.StripeError as exc:
        raise PaymentProviderError(f"Stripe could not return session {session_id}: {exc}") from exc


def checkout_session_fulfil_from_stripe(*, session_id: str) -> bool:
    """Credit a session that Stripe reports paid but whose webhook never reached us (reconciliation
    with --fulfil). Asking Stripe with our secret key is as authoritative as a signed event; the
    posting is the same one a webhook would make, so a webhook arriving afterwards changes nothing."""
    remote = checkout_session_retrieve(session_id=session_id)  # outside any transaction: network I/O
    if remote.get("payment_status") != "paid":
        return False
    with transaction.atomic():
        stripe_events_lock()
        _, created = credits_topup(session_id=session_id, payment_intent=remote.get("payment_intent") or "")
    return created


def _topup_key() -> Concat:
    return Concat(Value(TOPUP_PREFIX), OuterRef("pk"))


def paid_sessions_without_credits() -> QuerySet[CheckoutSession]:
    """Sessions we recorded as paid whose top-up posting is missing."""
    posted = Transaction.objects.filter(idempotency_key=_topup_key())
    return (CheckoutSession.objects.filter(status__in=[CheckoutStatus.PAID, CheckoutStatus.REFUNDED])
            .exclude(Exists(posted)).select_related("user"))


def paid_events_without_credits() -> QuerySet[StripeEvent]:
    """Events in which Stripe said one of our sessions was paid, with no top-up for it (a bug, or a
    session row removed by hand)."""
    posted = Transaction.objects.filter(idempotency_key=Concat(Value(TOPUP_PREFIX), OuterRef("session_id")))
    paid = (Q(type="checkout.session.completed", payload__data__object__payment_status="paid")
            | Q(type="checkout.session.async_payment_succeeded"))
    return (StripeEvent.objects.filter(paid).exclude(outcome=NOT_OURS)
            .annotate(session_id=KT("payload__data__object__id")).exclude(Exists(posted)).order_by("created"))


def credits_without_payment() -> QuerySet[Transaction]:
    """Stripe top-ups whose session is missing or not paid."""
    paid = CheckoutSession.objects.filter(pk=Substr(OuterRef("idempotency_key"), len(TOPUP_PREFIX) + 1),
                                          status__in=[CheckoutStatus.PAID, CheckoutStatus.REFUNDED])
    return (Transaction.objects.filter(kind="topup", idempotency_key__startswith=TOPUP_PREFIX)
            .exclude(Exists(paid)).order_by("created_at"))


def stripe_account_foreign_postings() -> QuerySet[Transaction]:
    """Postings on the Stripe clearing account that no Stripe event made (a hand-made posting there
    breaks the match between Stripe's payouts and our credits)."""
    return (Transaction.objects.filter(entries__account__code=STRIPE_CODE)
            .exclude(idempotency_key__startswith="stripe:").distinct().order_by("created_at"))


def open_wallet_flags() -> QuerySet[WalletFlag]:
    return WalletFlag.objects.filter(resolved_at__isnull=True).select_related("account__user").order_by("created_at")


def parked_refunds() -> QuerySet[StripeEvent]:
    return StripeEvent.objects.filter(type="charge.refunded", processed_at__isnull=True).order_by("created")


def stale_placeholders(*, older_than: timedelta = timedelta(hours=1)) -> QuerySet[CheckoutSession]:
    """Rows written before calling Stripe that never got Stripe's id (the process died mid-call)."""
    return CheckoutSession.objects.filter(id__startswith=PENDING_PREFIX,
                                          created_at__lt=timezone.now() - older_than).order_by("created_at")


def open_sessions_to_check(*, older_than: timedelta = timedelta(minutes=10),
                           newer_than: timedelta = timedelta(days=2)) -> QuerySet[CheckoutSession]:
    """Open sessions old enough that a payment's webhook should have arrived, young enough that Stripe
    still matters (sessions expire after 24 h, ref §6.2)."""
    now = timezone.now()
    return (CheckoutSession.objects.filter(status=CheckoutStatus.OPEN, created_at__lt=now - older_than,
                                           created_at__gt=now - newer_than)
            .exclude(id__startswith=PENDING_PREFIX).order_by("created_at"))
