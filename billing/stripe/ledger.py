"""The ledger postings Stripe events make: a paid session's top-up, a refund's clawback (with the
wallet flag when it overdraws), refunds parked until their payment is credited, and the lock that
serialises all Stripe event handling.

All Stripe events are handled one at a time, serialised on the Stripe clearing account's row. Without
that, a refund and the payment it refunds, handled concurrently, could each miss the other (the
refund finds no credited session and parks itself while the payment looks for parked refunds before
the refund has committed). Webhooks are rare, so one queue costs nothing; the per-job postings
(holds, settles) never touch this row, so the rule "do not lock a shared account on every posting"
holds for the hot path.

A clawback that is larger than what the wallet has available is posted in full, never clamped: the
wallet may go below zero (the only posting allowed to do that), the shortfall is recorded as a
WalletFlag for a person to resolve, and the user gets a Notification. Clamping would leave the
platform out of pocket for credits already spent and hide it; a negative balance blocks new jobs
(every hold needs available credits) until a top-up or an operator's correction settles it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from billing.models import (
    AccountKind,
    CheckoutSession,
    CheckoutStatus,
    LedgerAccount,
    Notification,
    StripeEvent,
    WalletFlag,
)
from billing.services import _lock_wallet, _post, system_account
from billing.stripe.client import STRIPE_CODE, TOPUP_PREFIX

logger = logging.getLogger(__name__)


def stripe_clearing_account() -> LedgerAccount:
    return system_account(STRIPE_CODE, AccountKind.STRIPE)


def stripe_events_lock() -> None:
    """Serialise Stripe event handling (see this module's docstring). Lock order: this row, then a wallet."""
    list(LedgerAccount.objects.select_for_update().filter(pk=stripe_clearing_account().pk).values_list("pk", flat=True))


@transaction.atomic
def credits_topup(*, session_id: str, payment_intent: str = "") -> tuple[CheckoutSession, bool]:
    """Post a paid session's credits to its buyer's wallet, once. Returns the session and whether this
    call posted them. Then applies any refund that arrived before the payment was confirmed. Callers
    hold the Stripe events lock (stripe_events_lock), so no refund can be parked meanwhile."""
    owner_id = CheckoutSession.objects.values_list("user_id", flat=True).get(pk=session_id)
    wallet = _lock_wallet(owner_id)  # lock order: wallet, then session
    session = CheckoutSession.objects.select_for_update().select_related("pack").get(pk=session_id)
    if payment_intent and not session.payment_intent:
        session.payment_intent = payment_intent
    _, created = _post(idempotency_key=f"{TOPUP_PREFIX}{session.pk}", kind="topup",
                       memo=f"{session.pack.name} bought with Stripe", reference=f"checkout:{session.pk}",
                       legs=[(stripe_clearing_account(), -session.credits), (wallet, session.credits)])
    if created:
        LedgerAccount.objects.filter(pk=wallet.pk).update(balance=wallet.balance + session.credits)
        if session.status != CheckoutStatus.REFUNDED:
            session.status = CheckoutStatus.PAID
        session.paid_at = timezone.now()
    session.save(update_fields=["payment_intent", "status", "paid_at"])
    if session.payment_intent:
        refunds_apply_parked(payment_intent=session.payment_intent)
    session.refresh_from_db()
    return session, created


@dataclass(frozen=True)
class Clawback:
    credits: int  # clawed back by this call (0 when an equal or larger refund was already applied)
    shortfall: int  # of those, credits the wallet did not have available (flagged)


@transaction.atomic
def credits_clawback(*, session_id: str, charge_id: str, amount_refunded: int, amount: int) -> Clawback:
    """Take back the credits a refund paid for: the session's credits × amount_refunded / amount
    (rounded down, so a refund never takes back more than it returned), less what earlier refunds of
    this payment already took. Posted in full even when the wallet cannot cover it; then flagged."""
    if amount <= 0 or amount_refunded <= 0:
        return Clawback(0, 0)
    owner_id = CheckoutSession.objects.values_list("user_id", flat=True).get(pk=session_id)
    wallet = _lock_wallet(owner_id)
    session = CheckoutSession.objects.select_for_update().get(pk=session_id)
    target = session.credits * min(amount_refunded, amount) // amount
    credits = target - session.refunded_credits
    if credits <= 0:
        return Clawback(0, 0)
    key = f"stripe:refund:{charge_id}:{amount_refunded}"
    _, created = _post(idempotency_key=key, kind="clawback", reference=f"checkout:{session.pk}",
                       memo=f"Stripe refund of {amount_refunded} of {amount} {session.currency.upper()} cents",
                       legs=[(wallet, -credits), (stripe_clearing_account(), credits)])
    if not created:
        return Clawback(0, 0)
    shortfall = credits - max(wallet.available, 0)
    LedgerAccount.objects.filter(pk=wallet.pk).update(balance=wallet.balance - credits)
    session.refunded_credits = target
    session.status = CheckoutStatus.REFUNDED
    session.save(update_fields=["refunded_credits", "status"])
    if shortfall > 0:
        _flag_wallet(wallet=wallet, credits=credits, shortfall=shortfall, reference=key, user_id=owner_id)
    return Clawback(credits, max(shortfall, 0))


def _flag_wallet(*, wallet: LedgerAccount, credits: int, shortfall: int, reference: str, user_id: int) -> None:
    WalletFlag.objects.create(
        account=wallet, amount=shortfall, reference=reference,
        reason=(f"A Stripe refund took back {credits} credits; only {max(wallet.available, 0)} were available "
                f"({wallet.balance} balance, {wallet.held} on hold)."))
    Notification.objects.create(
        user_id=user_id, kind="wallet_flagged",
        message=(f"A refund of your credit purchase took back {credits} credits, {shortfall} more than you had "
                 f"available. Your balance is below what running and new jobs need until you top up; our team "
                 f"has been told and will be in touch."))
    logger.warning("wallet %s flagged: refund %s clawed back %s credits, %s short", wallet.pk, reference,
                   credits, shortfall)


def refund_clawback(*, session: CheckoutSession, charge: dict[str, Any]) -> str:
    """Apply a charge.refunded event's refund to the credited session; returns the event's outcome."""
    result = credits_clawback(session_id=session.pk, charge_id=charge.get("id") or "",
                              amount_refunded=int(charge.get("amount_refunded") or 0),
                              amount=int(charge.get("amount") or 0))
    if not result.credits:
        return "refund already applied"
    flagged = f"; wallet flagged, {result.shortfall} short" if result.shortfall else ""
    return f"clawed back {result.credits}{flagged}"


def refunds_apply_parked(*, payment_intent: str) -> None:
    """Apply the refunds that arrived before their payment was credited, oldest first."""
    parked = StripeEvent.objects.filter(type="charge.refunded", processed_at__isnull=True,
                                        payload__data__object__payment_intent=payment_intent).order_by("created")
    for event in parked:
        session = CheckoutSession.objects.get(payment_intent=payment_intent,
                                              status__in=[CheckoutStatus.PAID, CheckoutStatus.REFUNDED])
        event.outcome = refund_clawback(session=session, charge=event.payload["data"]["object"])[:200]
        event.processed_at = timezone.now()
        event.save(update_fields=["outcome", "processed_at"])
