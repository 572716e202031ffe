"""Stripe's webhook: verifying that a request is a genuine, fresh event, and handling each event type
once.

Events arrive twice, late and out of order (ref §6.3). Three rules make the order irrelevant:
- Every event is stored once by its id (StripeEvent's primary key); a replay does nothing.
- "Paid" is final: a completed/async_succeeded event posts the credits whatever the session's status
  says, and nothing later un-posts them except a refund.
- A refund for a payment we have not credited yet (its charge.refunded overtook the completed event)
  is kept as a pending StripeEvent (processed_at empty) and applied the moment the credits post.
  Refund events are cumulative (amount_refunded grows), so each one moves the clawback up to its
  proportional target and an older, smaller one arriving late moves nothing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import stripe
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.models import CheckoutSession, CheckoutStatus, CreditPack, Notification, StripeEvent, WalletFlag
from billing.services import _lock_wallet
from billing.stripe.client import TOPUP_PREFIX, PaymentsNotConfigured
from billing.stripe.ledger import credits_topup, refund_clawback, stripe_events_lock

logger = logging.getLogger(__name__)

# ref §6.3: construct_event rejects timestamps older than this many seconds (replayed captures).
SIGNATURE_TOLERANCE = 300
NOT_OURS = "ignored: not a studio checkout session"


class WebhookRejected(Exception):
    """The request is not a genuine, fresh Stripe event: answered with 400, nothing stored. `code` says
    which: the signature (forged, stale, missing) or the body (signed, but not an event object)."""

    def __init__(self, message: str, *, code: str = "invalid_signature") -> None:
        super().__init__(message)
        self.code = code


STRIPE_EVENT_ID_MAX = StripeEvent._meta.get_field("id").max_length
STRIPE_EVENT_TYPE_MAX = StripeEvent._meta.get_field("type").max_length
STRIPE_CREATED_MAX = int(datetime(9999, 1, 1, tzinfo=UTC).timestamp())


def stripe_event_verify(*, body: bytes, signature: str | None) -> dict[str, Any]:
    """Check the Stripe-Signature header against the raw body (ref §6.3: HMAC-SHA256 of "<t>.<body>"
    with the endpoint's whsec_ secret, any v1 may match, t no older than the tolerance). Returns the
    event as plain data, or raises WebhookRejected."""
    secret = getattr(settings, "STRIPE_WEBHOOK_SECRET", "")
    if not secret:
        raise PaymentsNotConfigured()
    try:
        # The signature only (construct_event would also build the SDK's event object, and fails with
        # an AttributeError on a signed body that is JSON but not an object, such as `[]`).
        stripe.WebhookSignature.verify_header(body, signature, secret, tolerance=SIGNATURE_TOLERANCE)
    except stripe.SignatureVerificationError as exc:
        raise WebhookRejected(str(exc)) from exc
    except ValueError as exc:  # not UTF-8
        raise WebhookRejected("The body is not a JSON event.", code="invalid_event") from exc
    try:
        # Stored exactly as Stripe sent it, not as the SDK's objects re-serialise it.
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:  # not JSON, or nested past the parser's stack
        raise WebhookRejected("The body is not a JSON event.", code="invalid_event") from exc
    # ref §6.3: an event is an object with a string id and type, an integer `created`, and the
    # affected object under data.object.
    data = payload.get("data") if isinstance(payload, dict) else None
    if (not isinstance(payload, dict) or not isinstance(payload.get("id"), str)
            or not isinstance(payload.get("type"), str) or not isinstance(data, dict)
            or not isinstance(data.get("object"), dict)
            or not isinstance(payload.get("created", 0), int) or isinstance(payload.get("created"), bool)):
        raise WebhookRejected("The body is not a Stripe event.", code="invalid_event")
    # Within what StripeEvent stores (its id and type columns, a datetime for `created`), so a
    # signed but odd event is refused here rather than failing in the database or in fromtimestamp.
    if (len(payload["id"]) > STRIPE_EVENT_ID_MAX or len(payload["type"]) > STRIPE_EVENT_TYPE_MAX
            or not 0 <= payload.get("created", 0) <= STRIPE_CREATED_MAX):
        raise WebhookRejected("The body is not a Stripe event.", code="invalid_event")
    return payload


@transaction.atomic
def stripe_event_handle(*, payload: dict[str, Any]) -> str:
    """Handle one verified event, once. Returns what happened, also stored on the event row. An
    exception rolls back the event row too, so Stripe's retry of the delivery gets another go."""
    stripe_events_lock()
    created = datetime.fromtimestamp(int(payload.get("created") or 0), tz=UTC)
    try:
        with transaction.atomic():
            event = StripeEvent.objects.create(id=payload["id"], type=payload["type"], created=created,
                                               payload=payload)
    except IntegrityError:
        return "duplicate: already received"
    obj = (payload.get("data") or {}).get("object") or {}
    handler = _HANDLERS.get(event.type)
    outcome, done = handler(obj) if handler else ("ignored: event type not handled", True)
    event.outcome = outcome[:200]
    event.processed_at = timezone.now() if done else None
    event.save(update_fields=["outcome", "processed_at"])
    return outcome


@dataclass(frozen=True)
class PriceMismatch:
    """A session rebuilt from its metadata whose amount or currency is not the pack's price."""

    session_id: str
    user_id: int
    pack: CreditPack
    amount_total: Any
    currency: Any

    def describe(self) -> str:
        return (f"paid {self.amount_total} {str(self.currency).upper()} cents, but the pack "
                f"{self.pack.code} costs {self.pack.price_cents} {self.pack.currency.upper()} cents")


def _session_for_event(obj: dict[str, Any]) -> CheckoutSession | PriceMismatch | None:
    """Our row for the session in an event, or one rebuilt from the metadata we gave Stripe when our
    own write after creating it was lost. None for sessions that are not ours (another integration
    on the same Stripe account). A rebuild trusts the metadata only as far as the money agrees: a
    session whose `amount_total` and `currency` are not the pack's price (ref §6.2: amounts in the
    smallest currency unit, currency a lowercase ISO code) is a PriceMismatch, never a row."""
    session_id = obj.get("id") or ""
    session = CheckoutSession.objects.filter(pk=session_id).first()
    if session is not None or not session_id:
        return session
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    user = get_user_model().objects.filter(pk=_int(metadata.get("user"))).first()
    pack = CreditPack.objects.filter(code=str(metadata.get("pack") or "")).first()
    if user is None or pack is None or str(obj.get("client_reference_id") or "") != str(user.pk):
        return None
    amount_total, currency = obj.get("amount_total"), obj.get("currency")
    if (isinstance(amount_total, bool) or amount_total != pack.price_cents
            or str(currency or "").lower() != pack.currency.lower()):
        return PriceMismatch(session_id=str(session_id), user_id=user.pk, pack=pack, amount_total=amount_total,
                             currency=currency)
    session, _ = CheckoutSession.objects.get_or_create(pk=session_id, defaults={
        "user": user, "pack": pack, "credits": pack.credits, "amount_total": amount_total,
        "currency": pack.currency})
    return session


def _mismatch_flag(mismatch: PriceMismatch) -> tuple[str, bool]:
    """A paid session whose price does not match its pack: nothing is credited, and the buyer's wallet
    is flagged for a person (the WalletFlag an operator resolves in the admin, as for clawbacks), who
    can credit or refund it by hand. Once per session: its completed and async_succeeded events
    both say "paid"."""
    reference = f"{TOPUP_PREFIX}{mismatch.session_id}"
    outcome = f"flagged, not credited: {mismatch.describe()}"
    wallet = _lock_wallet(mismatch.user_id)
    if not WalletFlag.objects.filter(account=wallet, reference=reference).exists():
        WalletFlag.objects.create(
            account=wallet, amount=mismatch.pack.credits, reference=reference,
            reason=f"Stripe session {mismatch.session_id} (rebuilt from its metadata) {mismatch.describe()}; "
                   f"its {mismatch.pack.credits} credits were not posted."[:255])
        Notification.objects.create(
            user_id=mismatch.user_id, kind="payment_review",
            message=(f"We received a payment for {mismatch.pack.name} that does not match its price, so its "
                     f"credits were not added yet. Our team has been told and will check it."))
        logger.warning("stripe session %s %s: flagged, not credited", mismatch.session_id, mismatch.describe())
    return outcome, True


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _on_completed(obj: dict[str, Any]) -> tuple[str, bool]:
    session = _session_for_event(obj)
    if session is None:
        return NOT_OURS, True
    if isinstance(session, PriceMismatch):
        if obj.get("payment_status") == "paid":
            return _mismatch_flag(session)
        return f"ignored: not paid yet, and {session.describe()}", True
    payment_intent = obj.get("payment_intent") or ""
    # ref §6.3: only "paid" means the money arrived; "unpaid" is a delayed payment method still
    # pending, confirmed later by async_payment_succeeded or _failed.
    if obj.get("payment_status") != "paid":
        if payment_intent and not session.payment_intent:
            CheckoutSession.objects.filter(pk=session.pk, payment_intent="").update(payment_intent=payment_intent)
        return f"awaiting payment (payment_status={obj.get('payment_status')})", True
    return _credit(session, payment_intent)


def _on_async_succeeded(obj: dict[str, Any]) -> tuple[str, bool]:
    session = _session_for_event(obj)
    if session is None:
        return NOT_OURS, True
    if isinstance(session, PriceMismatch):
        return _mismatch_flag(session)
    return _credit(session, obj.get("payment_intent") or "")


def _credit(session: CheckoutSession, payment_intent: str) -> tuple[str, bool]:
    session, created = credits_topup(session_id=session.pk, payment_intent=payment_intent)
    return (f"credited {session.credits}" if created else "already credited"), True


def _on_async_failed(obj: dict[str, Any]) -> tuple[str, bool]:
    session = _session_for_event(obj)
    if session is None:
        return NOT_OURS, True
    if isinstance(session, PriceMismatch):
        return f"ignored: payment failed, and {session.describe()}", True
    # Only an open session fails: a late failure event must not undo credits Stripe said were paid.
    if CheckoutSession.objects.filter(pk=session.pk, status=CheckoutStatus.OPEN).update(status=CheckoutStatus.FAILED):
        return "payment failed; nothing credited", True
    return f"ignored: session already {session.status}", True


def _on_expired(obj: dict[str, Any]) -> tuple[str, bool]:
    if CheckoutSession.objects.filter(pk=obj.get("id") or "", status=CheckoutStatus.OPEN).update(
            status=CheckoutStatus.EXPIRED):
        return "expired unpaid", True
    return "ignored: not an open studio session", True


def _on_charge_refunded(obj: dict[str, Any]) -> tuple[str, bool]:
    # ref §6.3: data.object is a Charge; amount_refunded is the running total of its refunds.
    payment_intent = obj.get("payment_intent") or ""
    credited = (CheckoutSession.objects.filter(payment_intent=payment_intent,
                                               status__in=[CheckoutStatus.PAID, CheckoutStatus.REFUNDED])
                .first() if payment_intent else None)
    if credited is None:
        # Not credited (yet): the payment's own events may still be on their way. Parked; applied by
        # credits_topup, and listed by stripe_reconcile while it waits.
        return "pending: no credited session for this payment yet", False
    return refund_clawback(session=credited, charge=obj), True


_HANDLERS = {
    "checkout.session.completed": _on_completed,
    "checkout.session.async_payment_succeeded": _on_async_succeeded,
    "checkout.session.async_payment_failed": _on_async_failed,
    "checkout.session.expired": _on_expired,
    "charge.refunded": _on_charge_refunded,
}
