"""Stripe top-ups: Checkout Sessions for credit packs, the webhook events that pay for them, refunds that
claw credits back, and the reads that reconcile the two sides.

Wire format and SDK behaviour: ../shared/reference/provider-protocols.md §6 ("ref §6.x" below).

Money moves only from verified webhook events (ref §6.2: "fulfil from webhooks, not from the success
redirect"), in double-entry postings between the Stripe clearing account and the user's wallet:
a top-up is stripe -N / wallet +N under the key "stripe:checkout:<cs_id>"; a clawback is wallet -N /
stripe +N under "stripe:refund:<charge_id>:<amount_refunded>". Both keys are unique in the ledger, so
an event delivered five times, or two events that both say "paid" (completed and
async_payment_succeeded), post once.

Events arrive twice, late and out of order (ref §6.3). Three rules make the order irrelevant:
- Every event is stored once by its id (StripeEvent's primary key); a replay does nothing.
- "Paid" is final: a completed/async_succeeded event posts the credits whatever the session's status
  says, and nothing later un-posts them except a refund.
- A refund for a payment we have not credited yet (its charge.refunded overtook the completed event)
  is kept as a pending StripeEvent (processed_at empty) and applied the moment the credits post.
  Refund events are cumulative (amount_refunded grows), so each one moves the clawback up to its
  proportional target and an older, smaller one arriving late moves nothing.

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

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import stripe
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet, Value
from django.db.models.fields.json import KT
from django.db.models.functions import Concat, Substr
from django.http import Http404
from django.urls import reverse
from django.utils import timezone
from rest_framework import status

from billing.models import (
    AccountKind,
    CheckoutSession,
    CheckoutStatus,
    CreditPack,
    LedgerAccount,
    Notification,
    StripeEvent,
    Transaction,
    WalletFlag,
)
from billing.services import _lock_wallet, _post, system_account
from core.errors import InvalidRequest, ServiceError

logger = logging.getLogger(__name__)

STRIPE_CODE = "stripe"
# Our CheckoutSession row is written before Stripe is called (its uuid is the idempotency key), under
# this placeholder id; Stripe's cs_… id replaces it once Stripe answers.
PENDING_PREFIX = "pending_"
TOPUP_PREFIX = "stripe:checkout:"  # + cs_id: the one posting that credits a session
# ref §6.3: construct_event rejects timestamps older than this many seconds (replayed captures).
SIGNATURE_TOLERANCE = 300
NOT_OURS = "ignored: not a studio checkout session"


class PaymentsNotConfigured(ServiceError):
    code = "payments_not_configured"
    http_status = status.HTTP_503_SERVICE_UNAVAILABLE

    def __init__(self) -> None:
        super().__init__("Payments are not configured on this server: credits cannot be bought here yet.")


class PaymentProviderError(ServiceError):
    code = "payment_provider_error"
    http_status = status.HTTP_502_BAD_GATEWAY


class WebhookRejected(Exception):
    """The request is not a genuine, fresh Stripe event: answered with 400, nothing stored. `code` says
    which: the signature (forged, stale, missing) or the body (signed, but not an event object)."""

    def __init__(self, message: str, *, code: str = "invalid_signature") -> None:
        super().__init__(message)
        self.code = code


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


# --- reads -------------------------------------------------------------------------------------------

def credit_pack_list() -> QuerySet[CreditPack]:
    return CreditPack.objects.filter(active=True).order_by("sort", "price_cents")


def checkout_session_list_for_user(user: Any) -> QuerySet[CheckoutSession]:
    """The user's own sessions that exist at Stripe (placeholder rows mid-creation are not shown)."""
    return (CheckoutSession.objects.filter(user=user).exclude(id__startswith=PENDING_PREFIX)
            .select_related("pack").order_by("-created_at"))


def checkout_session_get_for_user(user: Any, session_id: str) -> CheckoutSession:
    """The access funnel for checkout sessions: only their buyer sees them; anyone else gets a 404,
    the same answer as for an id that does not exist."""
    session = checkout_session_list_for_user(user).filter(pk=session_id).first()
    if session is None:
        raise Http404("No such checkout session.")
    return session


# --- creating a session ----------------------------------------------------------------------------

def _absolute(path: str) -> str:
    return f"{settings.SITE_URL.rstrip('/')}{path}"


def checkout_session_create(*, user: Any, pack_code: str) -> CheckoutSession:
    """Create a Stripe Checkout Session (one-off payment) for a credit pack and return our row, whose
    `url` is Stripe's hosted payment page.

    Not one transaction on purpose: no database transaction is held open across a call to Stripe.
    Our row is committed first, with a uuid that makes the Idempotency-Key ("checkout-<uuid>", ref
    §6.4), so the SDK's own retries of a timed-out request return the same session rather than a
    second one. If Stripe refuses or cannot be reached the row is removed: nobody has the session's
    url, so nothing can be paid on it. If Stripe created a session but our final write was lost,
    the webhook still credits it from the session's metadata (see _session_for_event)."""
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
        _lock_stripe_events()
        _, created = credits_topup(session_id=session_id, payment_intent=remote.get("payment_intent") or "")
    return created


# --- ledger postings ---------------------------------------------------------------------------------

def _stripe_account() -> LedgerAccount:
    return system_account(STRIPE_CODE, AccountKind.STRIPE)


def _lock_stripe_events() -> None:
    """Serialise Stripe event handling (see the module docstring). Lock order: this row, then a wallet."""
    list(LedgerAccount.objects.select_for_update().filter(pk=_stripe_account().pk).values_list("pk", flat=True))


@transaction.atomic
def credits_topup(*, session_id: str, payment_intent: str = "") -> tuple[CheckoutSession, bool]:
    """Post a paid session's credits to its buyer's wallet, once. Returns the session and whether this
    call posted them. Then applies any refund that arrived before the payment was confirmed. Callers
    hold the Stripe events lock (_lock_stripe_events), so no refund can be parked meanwhile."""
    owner_id = CheckoutSession.objects.values_list("user_id", flat=True).get(pk=session_id)
    wallet = _lock_wallet(owner_id)  # lock order: wallet, then session
    session = CheckoutSession.objects.select_for_update().select_related("pack").get(pk=session_id)
    if payment_intent and not session.payment_intent:
        session.payment_intent = payment_intent
    _, created = _post(idempotency_key=f"{TOPUP_PREFIX}{session.pk}", kind="topup",
                       memo=f"{session.pack.name} bought with Stripe", reference=f"checkout:{session.pk}",
                       legs=[(_stripe_account(), -session.credits), (wallet, session.credits)])
    if created:
        LedgerAccount.objects.filter(pk=wallet.pk).update(balance=wallet.balance + session.credits)
        if session.status != CheckoutStatus.REFUNDED:
            session.status = CheckoutStatus.PAID
        session.paid_at = timezone.now()
    session.save(update_fields=["payment_intent", "status", "paid_at"])
    if session.payment_intent:
        _apply_parked_refunds(session.payment_intent)
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
                       legs=[(wallet, -credits), (_stripe_account(), credits)])
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


# --- webhook events ----------------------------------------------------------------------------------

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
    _lock_stripe_events()
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
    return _refund(credited, obj), True


def _refund(session: CheckoutSession, charge: dict[str, Any]) -> str:
    result = credits_clawback(session_id=session.pk, charge_id=charge.get("id") or "",
                              amount_refunded=int(charge.get("amount_refunded") or 0),
                              amount=int(charge.get("amount") or 0))
    if not result.credits:
        return "refund already applied"
    flagged = f"; wallet flagged, {result.shortfall} short" if result.shortfall else ""
    return f"clawed back {result.credits}{flagged}"


def _apply_parked_refunds(payment_intent: str) -> None:
    parked = StripeEvent.objects.filter(type="charge.refunded", processed_at__isnull=True,
                                        payload__data__object__payment_intent=payment_intent).order_by("created")
    for event in parked:
        session = CheckoutSession.objects.get(payment_intent=payment_intent,
                                              status__in=[CheckoutStatus.PAID, CheckoutStatus.REFUNDED])
        event.outcome = _refund(session, event.payload["data"]["object"])[:200]
        event.processed_at = timezone.now()
        event.save(update_fields=["outcome", "processed_at"])


_HANDLERS = {
    "checkout.session.completed": _on_completed,
    "checkout.session.async_payment_succeeded": _on_async_succeeded,
    "checkout.session.async_payment_failed": _on_async_failed,
    "checkout.session.expired": _on_expired,
    "charge.refunded": _on_charge_refunded,
}


# --- reconciliation ----------------------------------------------------------------------------------

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
